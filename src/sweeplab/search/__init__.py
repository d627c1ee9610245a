"""Search: a validated config turned into a Keras Tuner search whose trials
are tracked runs: preparation, the hypermodel and tuner (`tuning`), trials
trained together (`packing`), compile and fit settings (`training`), memory
between trials (`graph_memory`), Keras' session shared with the writer thread
(`session`), and trials in several processes (`chief`
serves the oracle, `worker` trains, `oracle_access` says who may).

May import: sweeplab.errors, sweeplab.net, sweeplab.config, sweeplab.data, sweeplab.models,
sweeplab.space, sweeplab.tracking.
"""
