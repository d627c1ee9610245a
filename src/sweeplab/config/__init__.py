"""Config: the schema of every config group (`schema`), the validation of a
composed Hydra config before anything runs (`validation`: it asks the data
layer which data sets exist and each model family for its own schema), and a
search's identity (`identity`).

May import: sweeplab.errors, sweeplab.net, sweeplab.space, sweeplab.data, sweeplab.models.
"""
