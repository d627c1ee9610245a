"""Tracking: the MLflow store (`store`), search and trial runs (`runs`), the
epoch metrics written off the training thread (`epochs`), logged models
(`logged_models`, `keras_average`), data lineage (`lineage`), saved
predictions, per-trial figures, queries that read runs back, and the UI's
addresses (`ui`).

May import: sweeplab.errors, sweeplab.net.
"""
