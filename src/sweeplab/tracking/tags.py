"""Names of the tags sweeplab sets on MLflow runs (the run layout in the README)."""

ROLE = "sweeplab.role"
FAMILY = "sweeplab.family"
TUNER = "sweeplab.tuner"
TRIAL_ID = "sweeplab.trial_id"
WORKER = "sweeplab.worker"
# A trial recorded again from its checkpoint after the process stopped while writing its run.
RERECORDED = "sweeplab.rerecorded"
# Set once a trial's whole record (results, model, curves) has landed. Its run ends FINISHED only
# once the oracle has taken the trial's result as well; a resumed search takes that result from a
# run that has this tag and did not end FINISHED, instead of training the trial again.
RECORDED = "sweeplab.recorded"
# How a resumed search completed a trial from its run's record (see RECORDED).
RECONCILED = "sweeplab.reconciled"
# The epochs a trial trained before the oracle pruned it (pruner=asha|median); absent: not pruned.
PRUNED = "sweeplab.pruned"
# Why a trial is outside tuner.constraints (not trained, or left out of leaderboards and ensembles).
INFEASIBLE = "sweeplab.infeasible"
# "true" on the trials of a search's Pareto front (`pareto`), and of a multirun's front across searches.
PARETO = "sweeplab.pareto"
PARETO_ACROSS = "sweeplab.pareto_across"
# Where a search's oracle took earlier trials from (tuner.warm_start), and how many.
WARM_START = "sweeplab.warm_start"
# The run of a trial's earlier try, on a run of its retry (tuner.max_retries_per_trial, a lost agent).
RETRY_OF = "sweeplab.retry_of"
# How a search trains its trials: N per pack, or one at a time and why (tuner.pack).
PACKING = "sweeplab.packing"
# Which pack a trial was trained in (tuner.pack), with the pack's trial ids.
PACK = "sweeplab.pack"
# host:port of a search's oracle, where agents join it.
ORACLE = "sweeplab.oracle"
# The oracle's TLS certificate among the search run's artifacts, or "none" (agents trust it).
ORACLE_CERT = "sweeplab.oracle_cert"
SEARCH_KEY = "sweeplab.search_key"
OVERRIDES = "sweeplab.overrides"
METHOD = "sweeplab.ensemble_method"
FAILURE = "sweeplab.failure"
PARENT = "mlflow.parentRunId"
# A key of one create_run call, so that a retried call finds the run an earlier try made.
CREATE_KEY = "sweeplab.create_key"
# The experiment's kind as the UI reads and sets it ("Machine learning", not "GenAI apps & agents").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
