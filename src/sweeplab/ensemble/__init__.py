"""Ensembles: candidates grouped by data set and task, the same trained model counted once
(`groups`), members trained on other encodings of the same labels made comparable (`encoding`),
weights chosen on the trials' saved validation predictions (`selection`), the ensembles logged
and registered as MLflow models (`builder`; the model itself is `sweeplab.tracking.keras_average`),
their weights figure (`plots`), and their command (`cli`: `python -m sweeplab.ensemble`).

May import: sweeplab.errors, sweeplab.tracking.
"""
