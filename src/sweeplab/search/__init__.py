"""Search: a validated config turned into a Keras Tuner search whose trials
are tracked runs: preparation, the hypermodel and tuner (`tuning`), trials
trained together (`packing`), compile and fit settings (`training`), memory
between trials (`graph_memory`), Keras' session shared with the writer thread
(`session`), what a search prints while it runs (`progress`), a
multirun job's lines (`job_lines`), and trials in several processes (`chief`
serves the oracle, `chief_status` says where it stands, `launchers` start its workers
or agents (locally, as Ray actors or SLURM jobs), `worker` trains,
`oracle_access` says who may, `reconcile` makes the oracle and the store agree).

May import: sweeplab.errors, sweeplab.net, sweeplab.config, sweeplab.data, sweeplab.models,
sweeplab.space, sweeplab.tracking.
"""
