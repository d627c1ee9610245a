"""Tracking: the MLflow store (`store`), search and trial runs (`runs`), epoch
metrics and finished trials' records written off the training thread (`epochs`,
`writer`), logged models (`logged_models`, `keras_average`), data lineage
(`lineage`), saved predictions, per-trial figures, queries that read runs back,
the UI's addresses (`ui`) and the team's server (`server`).

May import: sweeplab.errors, sweeplab.net.
"""
