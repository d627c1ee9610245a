"""Ensembles: weights chosen on the trials' saved validation predictions
(`selection`), the ensemble logged and registered as an MLflow model (`builder`;
the model itself is `sweeplab.tracking.keras_average`), its weights figure
(`plots`), and its command (`cli`: `python -m sweeplab.ensemble`).

May import: sweeplab.errors, sweeplab.tracking.
"""
