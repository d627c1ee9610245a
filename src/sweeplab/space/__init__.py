"""Search spaces as data: the `space:` of a model config turned into Keras
Tuner `hp` calls (`hyperparameters`), the rules each family's builder sets on
the values it reads (`rules`), and the names Keras understands (`vocabulary`).

May import: sweeplab.errors.
"""
