"""Tracking: the MLflow store (`store`), search and trial runs (`runs`), the
epoch metrics written off the training thread (`epochs`), logged models,
saved predictions, per-trial figures, and queries that read runs back.

May import: sweeplab.errors.
"""
