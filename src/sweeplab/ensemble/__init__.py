"""Ensembles: weights chosen on the trials' saved validation predictions
(`selection`), the ensemble logged and registered as an MLflow model
(`builder`, `pyfunc_model`), and its command (`cli`: `python -m sweeplab.ensemble`).

May import: sweeplab.errors, sweeplab.tracking.
"""
