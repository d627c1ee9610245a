"""Trial packing (`tuner.pack`): trials trained together as branches of one graph
end as they would alone, each with its own run, optimizer, early stopping and
model; a branch that fails fails alone; kill -9 and resume keep their promises."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXED_MLP, TINY
from mlflow import MlflowClient
from processes import Process, env, slow_epochs, until
from stores import sqlite_uri

from sweeplab.app import run


def trials_by_id(uri: str, experiment_id: str, status: str = "FINISHED") -> dict:
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id], f"tags.`sweeplab.role` = 'trial' and attributes.status = '{status}'")
    return {r.data.tags["sweeplab.trial_id"]: r for r in runs}


def logged_weights(uri: str, run_id: str) -> list[np.ndarray]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.keras.load_model(f"runs:/{run_id}/model").get_weights()


def search(tmp_path, make_config, name: str, *overrides: str):
    uri = sqlite_uri(tmp_path / name)
    cfg = make_config(
        [*TINY, f"tracking.uri={uri}", f"state_dir={tmp_path / name / 'state'}", "ensemble=none", *overrides]
    )
    return uri, run(cfg)


# Each branch its own learning rate and optimizer; only the learning rate varies, so the three trials
# take its three values. At 1e-9 the validation loss cannot improve by min_delta: that branch stops
# after its second epoch (patience 0) while the others train on.
THREE_LEARNING_RATES = [
    "tuner.max_trials=3",
    "trainer.epochs=6",
    "trainer.early_stopping.patience=0",
    "trainer.early_stopping.min_delta=1.0e-4",
    "model.space.layers=2",
    "model.space.units=32",
    "model.space.activation=relu",
    "model.space.initializer=glorot_uniform",
    "model.space.batch_norm=none",
    "model.space.dropout=0.2",
    "model.space.learning_rate={type: choice, values: [1.0e-9, 0.003, 0.03], default: 0.003}",
]


def test_a_trial_in_a_pack_ends_as_it_would_alone(tmp_path, make_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    alone_uri, alone = search(tmp_path, make_config, "alone", *THREE_LEARNING_RATES, "tuner.pack=1")
    packed_uri, packed = search(tmp_path, make_config, "packed", *THREE_LEARNING_RATES, "tuner.pack=3")
    alone_trials = trials_by_id(alone_uri, alone.experiment_id)
    packed_trials = trials_by_id(packed_uri, packed.experiment_id)
    assert sorted(packed_trials) == sorted(alone_trials) == ["0", "1", "2"]
    pack_tags = {t.data.tags["sweeplab.pack"] for t in packed_trials.values()}
    assert len(pack_tags) == 1 and "trials 0,1,2" in pack_tags.pop()
    assert "sweeplab.pack" not in alone_trials["0"].data.tags

    # The first trial sees the same initial weights, batches and dropout masks either way
    # (later trials alone see the pipeline's later epochs); in the pack, the others stop
    # and go on around it.
    one, other = alone_trials["0"], packed_trials["0"]
    assert one.data.params == other.data.params
    for key in ("epochs_trained", "final_val_accuracy", "final_val_loss", "test_accuracy", "test_loss"):
        assert other.data.metrics[key] == pytest.approx(one.data.metrics[key], rel=1e-4, abs=1e-5), key
    client_alone, client_packed = MlflowClient(alone_uri), MlflowClient(packed_uri)
    curve = [m.value for m in client_alone.get_metric_history(one.info.run_id, "val_loss")]
    packed_curve = [m.value for m in client_packed.get_metric_history(other.info.run_id, "val_loss")]
    np.testing.assert_allclose(packed_curve, curve, rtol=1e-4)
    for a, b in zip(logged_weights(alone_uri, one.info.run_id), logged_weights(packed_uri, other.info.run_id)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)

    # Each branch kept its own early stopping: one stopped early while the pack trained on.
    epochs = {t.data.params["learning_rate"]: t.data.metrics["epochs_trained"] for t in packed_trials.values()}
    assert sorted(epochs) == ["0.003", "0.03", "1e-09"]
    assert epochs["1e-09"] == 2 and max(epochs.values()) > 2, epochs
    packs = MlflowClient(packed_uri).download_artifacts(packed.parent_run_id, "packs.txt", str(tmp_path))
    assert "trials 0,1,2" in Path(packs).read_text()
    search_tags = MlflowClient(packed_uri).get_run(packed.parent_run_id).data.tags
    assert search_tags["sweeplab.packing"] == "3 trials per pack"
    alone_tags = MlflowClient(alone_uri).get_run(alone.parent_run_id).data.tags
    assert alone_tags["sweeplab.packing"] == "one trial at a time (tuner.pack=1)"


def test_a_diverging_branch_fails_alone_and_the_others_go_on(tmp_path, make_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, result = search(
        tmp_path,
        make_config,
        "nan",
        "tuner=grid",
        "tuner.max_trials=2",
        "tuner.pack=2",
        "trainer.optimizer=sgd",
        *FIXED_MLP,
        "model.space.learning_rate={type: choice, values: [0.01, 1.0e9], default: 0.01}",
    )
    assert (result.finished, result.failed) == (1, 1)
    (failed,) = trials_by_id(uri, result.experiment_id, "FAILED").values()
    assert failed.data.params["learning_rate"] == "1000000000.0"
    assert "loss became nan" in failed.data.tags["sweeplab.failure"] or "inf" in failed.data.tags["sweeplab.failure"]
    (finished,) = trials_by_id(uri, result.experiment_id).values()
    assert finished.data.metrics["epochs_trained"] == 2  # it went on after its neighbour diverged
    assert len(MlflowClient(uri).get_metric_history(failed.info.run_id, "loss")) <= 1


def test_a_pack_traces_its_step_once_and_its_models_are_saved_while_the_next_pack_trains(
    tmp_path, make_config, monkeypatch
):
    from sweeplab.search.packing import PackedModel
    from sweeplab.tracking.runs import TrialRun

    traced, savers = [], set()
    step, prepare = PackedModel.train_step, TrialRun.prepare_model

    def counted_step(self, data):
        traced.append(len(self.branches))
        return step(self, data)

    def watched_prepare(self, *args):
        savers.add(threading.current_thread().name)
        return prepare(self, *args)

    monkeypatch.setattr(PackedModel, "train_step", counted_step)
    monkeypatch.setattr(TrialRun, "prepare_model", watched_prepare)
    monkeypatch.chdir(tmp_path)
    uri, result = search(tmp_path, make_config, "turns", "tuner.max_trials=4", "tuner.pack=2")
    # Once per pack: the branches' metric variables exist before fit (created while tracing,
    # TensorFlow would trace the whole step again).
    assert traced == [2, 2]
    # The first pack's models were saved on the writer thread while the second pack cleared
    # Keras' session and trained; every one of them loads.
    assert savers and threading.current_thread().name not in savers
    trials = trials_by_id(uri, result.experiment_id)
    assert result.finished == len(trials) == 4
    for trial in trials.values():
        assert len(logged_weights(uri, trial.info.run_id)) > 0


# A grid of two trials, one layer and two, everything else fixed.
ONE_OR_TWO_LAYERS = [
    "model.space.learning_rate=0.01",
    # A plain value first: Hydra replaces the int range with a choice only over a value.
    "model.space.layers=1",
    "model.space.layers={type: choice, values: [1, 2], default: 1}",
    "model.space.units=16",
    "model.space.dropout=0.0",
    "model.space.batch_norm=none",
    "model.space.activation=relu",
    "model.space.initializer=glorot_uniform",
]


FRAGILE_FAMILY = """
from sweeplab.models import mlp
from sweeplab.models.mlp import *  # the mlp family's schema and rules


def build(values, dataset, cfg):
    if values["layers"] == 2:
        raise ValueError("this builder cannot make 2 layers")
    return mlp.build(values, dataset, cfg)
"""


def test_a_branch_that_cannot_be_built_fails_alone(tmp_path, make_config, monkeypatch):
    from sweeplab.models import FAMILIES

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fragile_mlp.py").write_text(FRAGILE_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES, "mlp", "fragile_mlp")
    uri, result = search(
        tmp_path,
        make_config,
        "fragile",
        "tuner=grid",
        "tuner.max_trials=2",
        "tuner.pack=2",
        *ONE_OR_TWO_LAYERS,
    )
    assert (result.finished, result.failed) == (1, 1)
    (failed,) = trials_by_id(uri, result.experiment_id, "FAILED").values()
    assert "cannot make 2 layers" in failed.data.tags["sweeplab.failure"]


BADLY_FAMILY = """
import keras
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

from sweeplab.models import mlp
from sweeplab.models.mlp import *  # the mlp family's schema and rules


class Badly(keras.layers.Layer):
    def call(self, x, training=None):
        if {when}:
            raise ValueError({message!r})
        return x


def build(values, dataset, cfg):
    model = mlp.build(values, dataset, cfg)
    if values["layers"] != 2:
        return model
    return keras.Model(model.inputs, keras.tree.map_structure(Badly(), model.outputs))
"""


def search_badly(tmp_path, make_config, monkeypatch, when: str, message: str, pack: int = 2):
    """A grid of two trials whose model (only for layers=2) raises `message` when `when` holds."""
    from sweeplab.models import FAMILIES

    monkeypatch.chdir(tmp_path)
    module = f"badly_{uuid.uuid4().hex}"  # a module of its own: Python keeps the first one imported
    (tmp_path / f"{module}.py").write_text(BADLY_FAMILY.format(when=when, message=message))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES, "mlp", module)
    return search(
        tmp_path,
        make_config,
        "badly",
        "tuner=grid",
        "tuner.max_trials=2",
        f"tuner.pack={pack}",
        *ONE_OR_TWO_LAYERS,
    )


# Evaluation: not while Keras builds the model (symbolically), only when it evaluates it.
@pytest.mark.parametrize(
    "when, step", [("training", "training"), ("training is False and not in_symbolic_scope()", "evaluation")]
)
def test_a_branch_whose_step_raises_fails_alone(tmp_path, make_config, monkeypatch, capsys, when, step):
    """A model that builds but raises in training or in evaluation (only for layers=2): unpacked,
    Keras Tuner fails that trial; packed, the branch is left out of the pack's step, the failure
    says which step, and the other branch trains."""
    uri, result = search_badly(tmp_path, make_config, monkeypatch, when, f"this layer cannot do {step}")
    assert (result.finished, result.failed) == (1, 1)
    (failed,) = trials_by_id(uri, result.experiment_id, "FAILED").values()
    assert failed.data.params["layers"] == "2"
    assert failed.data.tags["sweeplab.failure"] == f"its {step} step failed: this layer cannot do {step}"
    (finished,) = trials_by_id(uri, result.experiment_id).values()
    assert finished.data.metrics["epochs_trained"] == 2 and "test_accuracy" in finished.data.metrics
    out = capsys.readouterr().out
    assert f"trial {failed.data.tags['sweeplab.trial_id']} failed: its {step} step failed" in out
    assert "trial(s) failed" in out


@pytest.mark.parametrize("pack", [1, 2])
def test_a_password_in_a_failure_reason_is_masked_where_it_is_stored_and_printed(
    tmp_path, make_config, monkeypatch, capsys, pack
):
    """A trial's error may quote a URI with its password (a store's, a data source's)."""
    uri, result = search_badly(
        tmp_path, make_config, monkeypatch, "training", "cannot reach postgresql://bob:pw123@127.0.0.1:5432/db", pack
    )
    assert (result.finished, result.failed) == (1, 1)
    (failed,) = trials_by_id(uri, result.experiment_id, "FAILED").values()
    assert "cannot reach postgresql://bob:***@127.0.0.1:5432/db" in failed.data.tags["sweeplab.failure"]
    # sweeplab's own output (Keras Tuner prints the traceback on stderr, the line that raised included).
    out = capsys.readouterr().out
    trial_id = failed.data.tags["sweeplab.trial_id"]
    summary = [line for line in out.splitlines() if line.startswith(f"  trial {trial_id}: ")]
    assert summary and "cannot reach postgresql://bob:***@127.0.0.1:5432/db" in summary[0], out[-3000:]
    assert "pw123" not in out


def test_hyperband_packs_a_bracket_and_goes_on_from_its_checkpoints(tmp_path, make_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, result = search(
        tmp_path, make_config, "hb", "tuner=hyperband", "tuner.max_epochs=4", "tuner.factor=2", "tuner.pack=4"
    )
    trials = trials_by_id(uri, result.experiment_id)
    assert result.failed == 0 and len(trials) == result.finished >= 4
    continued = [t for t in trials.values() if "tuner/trial_id" in t.data.params]
    assert continued, "no trial went on from an earlier one"
    packs = {t.data.tags["sweeplab.pack"] for t in trials.values()}
    assert any(len(p.split("trials ")[1].split(",")) > 1 for p in packs)


def test_auto_packs_dense_families_and_leaves_conv_families_alone(make_config):
    from sweeplab.config.validation import validate
    from sweeplab.data import datasets
    from sweeplab.errors import ConfigError
    from sweeplab.search.packing import AUTO_PACK, pack_size

    def size(*overrides):
        cfg = validate(make_config(["tuner.pack=auto", *overrides]))
        return pack_size(cfg, datasets.load(cfg.data, cfg.seed))

    assert size() == AUTO_PACK
    assert size("model=inception") == 1
    assert size("tuner.executions_per_trial=2") == 1
    with pytest.raises(ConfigError, match="tuner.pack"):
        validate(make_config(["tuner.pack=0"]))


def test_kill_9_during_a_pack_then_resume_trains_every_trial_once(tmp_path, monkeypatch):
    slow_epochs(monkeypatch, 0.25)  # packs of 30 epochs that last long enough to be killed mid-way
    uri = sqlite_uri(tmp_path / "mlruns")
    args = [
        sys.executable,
        "-m",
        "sweeplab",
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        "tuner.pack=2",
        "tuner.max_trials=4",
        "trainer.epochs=30",
        "trainer.early_stopping.enabled=false",
        "trainer.verbose=0",
        "ensemble=none",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(uri)

    def statuses():
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, "tags.`sweeplab.role` = 'trial'") if experiments else []
        return sorted((r.data.tags["sweeplab.trial_id"], r.info.status) for r in runs)

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the second pack running, the first one finished
        try:
            if statuses() == [("0", "FINISHED"), ("1", "FINISHED"), ("2", "RUNNING"), ("3", "RUNNING")]:
                break
        except Exception:
            pass
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.3)
    else:
        pytest.fail(f"the second pack never ran: {statuses()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    again = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses() == [
        ("0", "FINISHED"),
        ("1", "FINISHED"),
        ("2", "FAILED"),
        ("2", "FINISHED"),
        ("3", "FAILED"),
        ("3", "FINISHED"),
    ]


def test_a_trial_finished_but_not_recorded_is_recorded_again_without_training(
    tmp_path, make_config, monkeypatch, capsys
):
    """Runs are written off the training thread, after Keras Tuner has finished the trial: a
    process that stops in between leaves a finished trial without a FINISHED run. The next
    run of the command records it from its checkpoint and trains nothing."""
    monkeypatch.chdir(tmp_path)
    overrides = ["tuner.max_trials=2", "tuner.pack=2"]
    uri, first = search(tmp_path, make_config, "rerecord", *overrides)
    before = trials_by_id(uri, first.experiment_id)
    client = MlflowClient(uri)
    # As if the process had stopped while writing it: not recorded in full, never FINISHED.
    client.delete_tag(before["1"].info.run_id, "sweeplab.recorded")
    client.set_terminated(before["1"].info.run_id, "FAILED")
    capsys.readouterr()
    uri, again = search(tmp_path, make_config, "rerecord", *overrides)
    assert "trial 1: finished but not recorded" in capsys.readouterr().out
    after = trials_by_id(uri, again.experiment_id)
    assert sorted(after) == ["0", "1"] and after["0"].info.run_id == before["0"].info.run_id
    redone = after["1"]
    assert redone.info.run_id != before["1"].info.run_id and "sweeplab.rerecorded" in redone.data.tags
    for key in ("final_val_accuracy", "test_accuracy", "final_val_loss"):
        assert redone.data.metrics[key] == pytest.approx(before["1"].data.metrics[key], abs=1e-6)
    assert client.get_metric_history(redone.info.run_id, "loss") == []  # not trained again
    assert redone.outputs.model_outputs  # its model, from the checkpoint


def test_a_trial_recorded_in_full_whose_run_did_not_finish_ends_finished_on_resume(tmp_path, make_config, capsys):
    """The process stopped after the oracle took the trial's result and its whole record landed, yet
    before its run ended FINISHED: the next run of the command ends that run FINISHED, records nothing."""
    overrides = ["tuner.max_trials=2", "tuner.pack=2"]
    uri, first = search(tmp_path, make_config, "finish", *overrides)
    before = trials_by_id(uri, first.experiment_id)
    client = MlflowClient(uri)
    client.set_terminated(before["1"].info.run_id, "FAILED")
    capsys.readouterr()
    uri, again = search(tmp_path, make_config, "finish", *overrides)
    assert "trial 1: trained and recorded in run" in capsys.readouterr().out
    after = trials_by_id(uri, again.experiment_id)
    assert {k: r.info.run_id for k, r in after.items()} == {k: r.info.run_id for k, r in before.items()}
    assert "the search had taken its result" in after["1"].data.tags["sweeplab.reconciled"]


@pytest.mark.slow
def start_chief_of_a_long_pack(tmp_path, uri: str) -> Process:
    """A search that only serves agents, its trials a pack of two that trains far longer than the test."""
    return Process(
        [
            sys.executable,
            "-m",
            "sweeplab",
            "tuner.workers=0",
            "tuner.max_trials=2",
            "tuner.pack=2",
            "trainer.batch_size=4",
            "trainer.steps_per_execution=1",
            "trainer.epochs=1000",
            "trainer.early_stopping.enabled=false",
            "tuner.oracle.wait_s=4",
            "trainer.verbose=0",
            "ensemble=none",
            f"tracking.uri={uri}",
            f"state_dir={tmp_path / 'state'}",
        ],
        tmp_path,
        tmp_path / "chief.log",
    )


def test_an_agent_that_loses_its_chief_fails_every_run_of_its_pack(tmp_path, processes):
    """The chief killed while an agent trains a pack: before it stops, the agent ends every
    run of the pack FAILED with the reason (not only one trial's, nor none)."""
    uri = sqlite_uri(tmp_path / "mlruns")
    chief = start_chief_of_a_long_pack(tmp_path, uri)
    processes.append(chief)
    found = until(
        lambda: re.search(r"agents join from any machine with:\n  (.+)\n", chief.output()),
        120,
        "the agent command",
        chief,
    )
    (tmp_path / "agent").mkdir()  # in a folder of its own, as on another machine
    agent = Process(
        found.group(1).replace(" python ", f" {sys.executable} ", 1),
        tmp_path / "agent",
        tmp_path / "agent.log",
        shell=True,
    )
    processes.append(agent)
    client = MlflowClient(uri)

    def pack_training():
        runs = trials_by_id(uri, client.get_experiment_by_name("sweeplab").experiment_id, "RUNNING")
        return len(runs) == 2 and all(client.get_metric_history(r.info.run_id, "loss") for r in runs.values())

    until(pack_training, 240, "the agent's pack to train", agent, chief)
    os.killpg(chief.proc.pid, signal.SIGKILL)
    chief.proc.wait()
    assert agent.wait(120) == 3, agent.output()[-3000:]
    runs = client.search_runs(
        [client.get_experiment_by_name("sweeplab").experiment_id], "tags.`sweeplab.role` = 'trial'"
    )
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in runs) == ["0", "1"]
    for trial in runs:
        assert trial.info.status == "FAILED", agent.output()[-3000:]
        assert "has not answered" in trial.data.tags["sweeplab.failure"]
