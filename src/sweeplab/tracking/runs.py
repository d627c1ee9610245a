"""MLflow runs: one parent run per search, one child run per trial.

Everything goes through `MlflowClient` with explicit run ids, so no global
"active run" state leaks between a search and its trials.
"""

from __future__ import annotations

import contextlib
import threading

from sweeplab.errors import describe
from sweeplab.tracking import writer
from sweeplab.tracking.batches import log_bytes, log_metrics, log_params
from sweeplab.tracking.epochs import EpochLogger
from sweeplab.tracking.lineage import log_dataset_inputs
from sweeplab.tracking.metric_names import split_of
from sweeplab.tracking.queries import trial_runs
from sweeplab.tracking.store import RetryingClient, redact
from sweeplab.tracking.tags import FAILURE, FAMILY, PARENT, RECORDED, ROLE, SEARCH_KEY, TRIAL_ID, WORKER

# What becomes of a run whose record landed but whose result the oracle never took.
RESUME_ACCEPTS = "a resumed search takes its result from this run instead of training the trial again"


class SearchRun:
    """The parent run of one search; reused when the same search resumes."""

    def __init__(self, client, experiment_id: str, search_key: str, fresh: bool):
        # {trial id: why} of trial runs this process could not end (the store refused even that).
        self.unclosed: dict[str, str] = {}
        self.client = client
        self.experiment_id = experiment_id
        self.search_key = search_key
        self.run_id = None if fresh else self._find_existing()
        self.resumed = self.run_id is not None

    @classmethod
    def attach(cls, client, experiment_id: str, run_id: str) -> SearchRun:
        """The running search of a trial worker: its process started and ends it."""
        search = cls.__new__(cls)
        search.client, search.experiment_id, search.run_id = client, experiment_id, run_id
        search.search_key, search.resumed, search.unclosed = None, True, {}
        return search

    def _find_existing(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{SEARCH_KEY}` = '{self.search_key}' and tags.`{ROLE}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def start(self, name: str, tags: dict, params: dict, config_yaml: str) -> str:
        if self.resumed:
            self.client.update_run(self.run_id, status="RUNNING")
            self.mark_interrupted_trials()
            return self.run_id
        tags = {k: redact(str(v)) for k, v in tags.items()}  # the overrides may hold a tracking.uri
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={ROLE: "search", SEARCH_KEY: self.search_key, **tags}
        )
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, params)
        # The resolved config may hold a tracking or database URI with its password.
        self.client.log_text(self.run_id, redact(config_yaml), "config.yaml")
        return self.run_id

    def mark_interrupted_trials(self) -> None:
        """Trial runs left RUNNING by a crash are FAILED; Keras Tuner retries those trials."""
        self.fail_running_trials("interrupted (the search stopped during this trial)")

    def fail_running_trials(self, reason: str, owned=lambda run: True) -> None:
        """The RUNNING trial runs for which `owned(run)` holds end FAILED, with `reason`."""
        for run in trial_runs(self.client, self.experiment_id, self.run_id, status="RUNNING"):
            if owned(run):
                self.client.set_tag(run.info.run_id, FAILURE, reason)
                self.client.set_terminated(run.info.run_id, "FAILED")

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class TrialRun:
    """The child run of one Keras Tuner trial."""

    def __init__(
        self,
        search: SearchRun,
        trial_id: str,
        family: str,
        values: dict,
        worker: str | None = None,
        datasets: dict | None = None,
        tags: dict | None = None,
    ):
        self.search, self.trial_id = search, trial_id
        self.client = search.client
        self.experiment_id = search.experiment_id
        self.ended: str | None = None  # the status this process ended the run with
        self._ending = threading.Lock()  # the writer thread finishes it, a heartbeat's thread may abandon it
        self._settling = threading.Lock()
        self.recorded = self.accepted = False  # its whole record has landed; the oracle took its result
        self.datasets = datasets or {}
        self.model_id: str | None = None
        tags = {PARENT: search.run_id, ROLE: "trial", TRIAL_ID: trial_id, FAMILY: family, **(tags or {})}
        if worker:
            tags[WORKER] = worker
        run = self.client.create_run(search.experiment_id, run_name=f"trial-{trial_id}", tags=tags)
        self.run_id = run.info.run_id
        self.epochs = EpochLogger(self.client, self.run_id)
        try:
            log_params(self.client, self.run_id, {k: str(v) for k, v in values.items()})
            if self.datasets:
                log_dataset_inputs(self.client, self.run_id, self.datasets)
        except Exception as err:  # no one else holds the run yet: it must not stay RUNNING
            self.fail(f"its parameters or data sets could not be logged: {describe(err)}")
            raise

    def log_results(self, metrics: dict) -> None:
        """Final metrics, each linked to the logged model (if any) and to the split it was measured on."""
        groups: dict[str | None, dict] = {}
        for key, value in metrics.items():
            groups.setdefault(split_of(key), {})[key] = value
        for split, values in groups.items():
            log_metrics(self.client, self.run_id, values, model_id=self.model_id, dataset=self.datasets.get(split))

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_bytes(self, data: bytes, path: str) -> None:
        log_bytes(self.client, self.run_id, data, path)

    def log_artifacts(self, folder: str, path: str) -> None:
        self.client.log_artifacts(self.run_id, folder, path)

    def prepare_model(self, model, input_example):
        """The trained Keras model's files, saved locally as the run's logged model `model` (this reads
        the model; `upload_model` does not)."""
        from sweeplab.tracking.logged_models import prepare_keras_model

        return prepare_keras_model(self.client, self.experiment_id, self.run_id, model, input_example)

    def upload_model(self, prepared) -> None:
        """The prepared model to the store; metrics logged after it link to it."""
        from sweeplab.tracking.logged_models import upload_model

        self.model_id = upload_model(self.client, self.run_id, prepared)

    def complete_in_background(self, steps: list) -> None:
        """Run `steps` (writes, and reads of a model nothing trains any more) on the writer thread,
        then tag the run recorded (`tags.RECORDED`). It ends FINISHED once the oracle has accepted
        the trial's result too (`accept`), whichever comes first; FAILED with the reason if a step,
        an epoch's metrics or the end itself fails. So a FINISHED run is one the search counted,
        and a run left recorded is one a resumed search accepts without training it again."""

        def complete():
            try:
                for step in steps:
                    step()
                self.epochs.flush()  # its curves are part of the record
                self.client.set_tag(self.run_id, RECORDED, "true")
            except Exception as err:
                reason = describe(err)
                print(
                    f"[sweeplab] trial {self.trial_id}: its record did not land in MLflow ({reason}); "
                    "its run ends FAILED",
                    flush=True,
                )
                self.fail(reason)
                return
            self._settle(recorded=True)

        writer.submit(complete)

    def accept(self) -> None:
        """The oracle has accepted the trial's result: the run ends FINISHED once its record has
        landed (now, or on the writer thread when it does)."""
        self._settle(accepted=True)

    def _settle(self, recorded: bool = False, accepted: bool = False) -> None:
        with self._settling:  # the writer thread records, the training thread accepts: the second ends it
            self.recorded |= recorded
            self.accepted |= accepted
            both = self.recorded and self.accepted
        if not both:
            return
        try:
            self.finish()
        except Exception as err:
            reason = describe(err)
            print(f"[sweeplab] trial {self.trial_id}: its run could not end FINISHED ({reason})", flush=True)
            self.fail(reason)

    def _claim(self, status: str) -> bool:
        """Whether this caller ends the run (`status`): only the first one does."""
        with self._ending:
            if self.ended is not None:
                return False
            self.ended = status
            return True

    def finish(self) -> None:
        """FINISHED, unless this process already ended the run (it was abandoned meanwhile)."""
        self.epochs.flush()
        if not self._claim("FINISHED"):
            return
        try:
            self.client.set_terminated(self.run_id, "FINISHED")
        except Exception:
            with self._ending:
                self.ended = None  # still RUNNING: the caller fails it with the reason
            raise

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """End the run `status` with `reason` (the first reason given wins). Never raises: when the
        store refuses even this, the output says which run could not be closed, and the search's
        summary counts it."""
        if not self._claim(status):
            return
        # Said in the output by the writer; the failure being recorded matters more.
        with contextlib.suppress(Exception):
            self.epochs.flush()
        self._end(self.client, reason, status)

    def abandon(self, reason: str, budget_s: float) -> None:
        """fail() for a process about to stop: its epochs' writes not waited for (the writer may be
        stuck on a store that is down), and its own writes retried for `budget_s` at most."""
        if self._claim("FAILED"):
            self._end(RetryingClient(getattr(self.client, "raw", self.client), budget_s), reason, "FAILED")

    def _end(self, client, reason: str, status: str) -> None:
        if self.recorded:
            reason += f"; its record is complete: {RESUME_ACCEPTS}"
        try:
            client.set_tag(self.run_id, FAILURE, reason[:5000])
            client.set_terminated(self.run_id, status)
        except Exception as err:
            why = describe(err)
            self.search.unclosed[self.trial_id] = f"{reason} (its run could not be marked {status}: {why})"
            print(
                f"[sweeplab] trial {self.trial_id}: could not mark its run {self.run_id} {status} ({why}); "
                f"it failed because: {reason}",
                flush=True,
            )
