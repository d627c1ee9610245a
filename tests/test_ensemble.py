"""Ensembles: weight selection on known answers, and a real tiny sweep read back from MLflow."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF_DIR, TINY
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from stores import sqlite_uri

from sweeplab.ensemble import selection
from sweeplab.errors import EnsembleError
from sweeplab.tracking import predictions

REGISTERED = "test-ensemble"


# --- weight selection on synthetic predictions -------------------------------------------


def _two_class(correct: list[float]) -> np.ndarray:
    """Probabilities for labels all 0: column 0 holds each sample's probability of the truth."""
    p = np.array(correct)
    return np.stack([p, 1 - p], axis=1)


# A is confidently right on the first half, mildly wrong on the second; B the mirror image.
# Each alone: accuracy 0.5. Half and half: right everywhere (0.65). Adding either again
# keeps accuracy 1.0 but raises the loss, so greedy stops at [0.5, 0.5].
LABELS = {"output": np.zeros(4, dtype="int64")}
A = {"output": _two_class([0.9, 0.9, 0.4, 0.4])}
B = {"output": _two_class([0.4, 0.4, 0.9, 0.9])}
BAD = {"output": _two_class([0.1, 0.1, 0.1, 0.1])}


def test_greedy_finds_complementary_members():
    chosen = selection.select([A, B, BAD], LABELS, "val_accuracy", maximize=True)
    np.testing.assert_allclose(chosen.weights, [0.5, 0.5, 0.0])
    assert chosen.val_metrics["accuracy"] == 1.0
    assert chosen.best_member_val_metrics["accuracy"] == 0.5


def test_greedy_minimizing_loss_finds_the_same_weights():
    chosen = selection.select([A, B, BAD], LABELS, "val_loss", maximize=False)
    np.testing.assert_allclose(chosen.weights, [0.5, 0.5, 0.0])


def test_greedy_stops_when_nothing_improves():
    chosen = selection.select([A, dict(A)], LABELS, "val_accuracy", maximize=True)
    np.testing.assert_allclose(chosen.weights, [1.0, 0.0])


def test_greedy_respects_max_steps():
    chosen = selection.select([A, B], LABELS, "val_accuracy", maximize=True, max_steps=0)
    np.testing.assert_allclose(chosen.weights, [1.0, 0.0])


def test_greedy_picks_the_same_member_again_when_that_helps():
    # Each alone is right on 3 of 4. Good + Weak is right on all; adding Good again keeps
    # that and lowers the loss; a third Good breaks the last sample (0.49), a second Weak
    # raises the loss: greedy stops at Good twice, Weak once.
    good = {"output": _two_class([0.9, 0.6, 0.6, 0.42])}
    weak = {"output": _two_class([0.2, 0.6, 0.6, 0.7])}
    chosen = selection.select([good, weak], LABELS, "val_accuracy", maximize=True)
    np.testing.assert_allclose(chosen.weights, [2 / 3, 1 / 3])
    assert chosen.val_metrics["accuracy"] == 1.0


def test_optimizer_weights_stay_on_the_simplex_and_never_lose_to_the_best_member():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    members = []
    for boost in (0.5, 0.6, 0.55, 0.1):
        p = rng.random((300, 3))
        p[np.arange(300), labels] += boost
        members.append({"output": p / p.sum(axis=1, keepdims=True)})
    chosen = selection.select(members, {"output": labels}, "val_accuracy", True, method="optimize")
    assert (chosen.weights >= 0).all()
    assert chosen.weights.sum() == pytest.approx(1.0)
    assert chosen.val_metrics["accuracy"] >= chosen.best_member_val_metrics["accuracy"]


def test_multi_output_members_are_averaged_per_head():
    first = {"cultivar": _two_class([0.9, 0.9, 0.4, 0.4]), "alcohol": np.array([[1.0], [2.0], [3.0], [4.0]])}
    second = {"cultivar": _two_class([0.4, 0.4, 0.9, 0.9]), "alcohol": np.array([[3.0], [2.0], [1.0], [0.0]])}
    averaged = selection.average([first, second], [0.25, 0.75])
    np.testing.assert_allclose(averaged["alcohol"], [[2.5], [2.0], [1.5], [1.0]])
    np.testing.assert_allclose(averaged["cultivar"][:, 0], [0.525, 0.525, 0.775, 0.775])

    targets = {"cultivar": np.zeros(4, dtype="int64"), "alcohol": np.array([2.0, 2.0, 2.0, 2.0])}
    chosen = selection.select([first, second], targets, "val_cultivar_accuracy", maximize=True)
    np.testing.assert_allclose(chosen.weights, [0.5, 0.5])
    assert chosen.val_metrics["cultivar_accuracy"] == 1.0
    assert chosen.val_metrics["alcohol_mae"] == pytest.approx(0.0)
    assert chosen.val_metrics["loss"] == pytest.approx(
        chosen.val_metrics["cultivar_loss"] + chosen.val_metrics["alcohol_loss"]
    )


def test_unknown_objective_names_the_metrics_available():
    with pytest.raises(EnsembleError, match=r"'f1'.*\['accuracy', 'loss'\]"):
        selection.select([A], LABELS, "val_f1", maximize=True)


def test_predictions_of_a_multi_output_net_are_stored_per_head():
    import keras

    from sweeplab.data.datasets import Split

    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4)(inputs)
    model = keras.Model(
        inputs,
        {
            "cultivar": keras.layers.Dense(3, activation="softmax", name="cultivar")(hidden),
            "alcohol": keras.layers.Dense(1, name="alcohol")(hidden),
        },
    )

    class TwoHeads:
        x = np.ones((5, 3), dtype="float32")
        val = test = Split({"features": x}, {"cultivar": np.zeros(5, dtype="int64"), "alcohol": np.ones(5)})

    arrays = predictions.collect(model, TwoHeads)
    saved = predictions.Predictions(arrays)
    assert saved.heads == ["alcohol", "cultivar"]
    assert saved.shapes() == {
        "val/alcohol": (5, 1),
        "val/cultivar": (5, 3),
        "test/alcohol": (5, 1),
        "test/cultivar": (5, 3),
    }
    assert set(arrays) >= {"y_val/cultivar", "y_test/alcohol"}


def test_saved_outputs_match_predict_for_dict_inputs_across_slices():
    import keras

    chemistry, color = keras.Input((3,), name="chemistry"), keras.Input((1,), name="color")
    hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([chemistry, color]))
    model = keras.Model(
        {"chemistry": chemistry, "color": color},
        {
            "cultivar": keras.layers.Dense(3, activation="softmax", name="cultivar")(hidden),
            "alcohol": keras.layers.Dense(1, name="alcohol")(hidden),
        },
    )
    rng = np.random.default_rng(0)
    x = {"chemistry": rng.normal(size=(7, 3)).astype("float32"), "color": rng.integers(0, 2, (7, 1)).astype("float32")}
    # 3 rows per call: 7 rows come in three slices, the last one short.
    direct = predictions.outputs_of(model, x, rows_per_call=3)
    predicted = model.predict(x, verbose=0)
    assert set(direct) == {"cultivar", "alcohol"}
    for head in direct:
        assert direct[head].shape == predicted[head].shape
        np.testing.assert_allclose(direct[head], predicted[head], rtol=1e-5, atol=1e-6)


# --- a real tiny sweep --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One real search (3 trials, 2 epochs) ending with a registered ensemble."""
    from sweeplab.app import run

    root = tmp_path_factory.mktemp("sweep")
    uri = sqlite_uri(root / "mlruns")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    *TINY,
                    "tuner.max_trials=3",
                    f"tracking.uri={uri}",
                    f"state_dir={root / 'state'}",
                    "tracking.experiment=ens",
                    f"ensemble.registered_model={REGISTERED}",
                ],
            )
        GlobalHydra.instance().clear()
        result = run(cfg)
        from mlflow import MlflowClient

        yield {"result": result, "client": MlflowClient(uri), "uri": uri, "cfg": cfg, "root": root}


def _weights(run) -> list[float]:
    return [float(w) for w in run.data.params["weights"].split(",")]


def test_sweep_ends_with_an_ensemble_run(sweep):
    run = sweep["client"].get_run(sweep["result"].ensemble_run_id)
    assert run.data.tags["sweeplab.role"] == "ensemble"
    assert run.info.experiment_id == sweep["result"].experiment_id
    members = run.data.params["members"].split(",")
    assert [run.data.params[f"member_{i}.run_id"] for i in range(len(members))] == members
    artifacts = {a.path for a in sweep["client"].list_artifacts(run.info.run_id)}
    assert "ensemble_weights.png" in artifacts
    # The model is the run's MLflow 3 logged model, its metrics linked to it.
    (output,) = run.outputs.model_outputs
    logged = sweep["client"].get_logged_model(output.model_id)
    assert (logged.name, logged.source_run_id) == ("model", run.info.run_id)
    linked = {m.key: m.value for m in logged.metrics or []}
    assert linked["ensemble_test_accuracy"] == run.data.metrics["ensemble_test_accuracy"]


def test_registered_version_lists_members_and_weights_and_holds_the_alias(sweep):
    client = sweep["client"]
    run = client.get_run(sweep["result"].ensemble_run_id)
    version = client.get_model_version_by_alias(REGISTERED, "champion")
    assert version.run_id == run.info.run_id
    assert version.source == f"models:/{run.outputs.model_outputs[0].model_id}"
    for i, weight in enumerate(_weights(run)):
        assert f"{weight:.3f} x " in version.description
        assert f"(run {run.data.params[f'member_{i}.run_id']})" in version.description


def test_members_and_weights_line_up_and_reproduce_the_recorded_scores(sweep):
    """The logged member list and weights agree with the per-member params; every member is a
    FINISHED trial of this search; weights sum to one; and averaging the members' saved
    predictions with the logged weights gives the ensemble's recorded val and test scores."""
    client, result = sweep["client"], sweep["result"]
    run = client.get_run(result.ensemble_run_id)
    params, metrics = run.data.params, run.data.metrics
    members, weights = params["members"].split(","), _weights(run)
    assert len(members) == len(weights) == len(set(members)) >= 1
    for i, (member, weight) in enumerate(zip(members, weights)):
        assert params[f"member_{i}.run_id"] == member
        assert float(params[f"member_{i}.weight"]) == weight
    assert f"member_{len(members)}.run_id" not in params
    assert weights == sorted(weights, reverse=True)  # heaviest first
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    # Candidates were the search's 3 trials (top_k 5); members are among them.
    assert params["ensemble.candidates"] == "3"
    saved = []
    for i, member in enumerate(members):
        trial = client.get_run(member)
        assert trial.info.status == "FINISHED"
        assert trial.info.experiment_id == result.experiment_id
        assert trial.data.tags["sweeplab.role"] == "trial"
        assert trial.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert params[f"member_{i}.family"] == trial.data.tags["sweeplab.family"]
        with tempfile.TemporaryDirectory() as tmp:
            saved.append(predictions.Predictions.load(client.download_artifacts(member, predictions.ARTIFACT, tmp)))
    for split in ("val", "test"):
        labels = saved[0].targets[split]["output"]
        averaged = sum(w * p.outputs[split]["output"].astype("float64") for w, p in zip(weights, saved))
        accuracy = float(np.mean(averaged.argmax(axis=1) == labels))
        loss = float(-np.mean(np.log(np.clip(averaged[np.arange(len(labels)), labels], 1e-7, 1.0))))
        assert accuracy == pytest.approx(metrics[f"ensemble_{split}_accuracy"], abs=1e-9)
        assert loss == pytest.approx(metrics[f"ensemble_{split}_loss"], abs=1e-4)


def test_ensemble_is_never_worse_than_its_best_member_on_validation(sweep):
    client = sweep["client"]
    metrics = client.get_run(sweep["result"].ensemble_run_id).data.metrics
    assert metrics["ensemble_val_accuracy"] >= metrics["best_member_val_accuracy"]
    # Scores recomputed from saved predictions agree with Keras's own.
    best_trial = client.get_run(sweep["result"].best_run_id).data.metrics
    assert metrics["best_member_val_accuracy"] == pytest.approx(best_trial["final_val_accuracy"], abs=1e-6)
    assert metrics["best_member_test_accuracy"] == pytest.approx(best_trial["test_accuracy"], abs=1e-6)


def test_logged_model_reproduces_the_recorded_test_metric(sweep):
    import time

    import mlflow

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets as data

    run_id = sweep["result"].ensemble_run_id
    mlflow.set_tracking_uri(sweep["uri"])
    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert time.perf_counter() - start < 30
    dataset = data.load(validate(sweep["cfg"]).data, 42)
    accuracy = float(np.mean(model.predict(dataset.test.x).argmax(axis=1) == dataset.test.y))
    recorded = sweep["client"].get_run(run_id).data.metrics["ensemble_test_accuracy"]
    assert accuracy == pytest.approx(recorded, abs=1e-6)


def test_each_build_registers_a_new_version(sweep):
    from sweeplab.ensemble import builder as ensemble

    client = sweep["client"]
    versions = client.search_model_versions(f"name='{REGISTERED}'")
    assert [v.run_id for v in versions] == [sweep["result"].ensemble_run_id]
    again = ensemble.build(
        client, sweep["result"].experiment_id, top_k=2, method="optimize", registered_model=REGISTERED
    )
    assert again.registered.startswith(f"{REGISTERED} version 2")
    assert {v.run_id for v in client.search_model_versions(f"name='{REGISTERED}'")} == {
        sweep["result"].ensemble_run_id,
        again.run_id,
    }
    # The alias moves only to a version that is better on validation.
    first = client.get_run(sweep["result"].ensemble_run_id).data.metrics["ensemble_val_accuracy"]
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert int(champion.version) == (2 if again.val["accuracy"] > first else 1)
    assert again.registered.endswith("(alias champion)") == (int(champion.version) == 2)


def test_one_candidate_gets_all_the_weight(sweep):
    from sweeplab.ensemble import builder as ensemble

    built = ensemble.build(sweep["client"], sweep["result"].experiment_id, top_k=1)
    assert [(m.run_id, m.weight) for m in built.members] == [(sweep["result"].best_run_id, 1.0)]
    assert built.val == built.best_member_val and built.test == built.best_member_test
    assert built.registered is None


def _copy_trial(client, source_run_id: str, experiment_id: str, arrays: dict, score: float) -> str:
    """A finished trial run holding `source`'s logged model and the given predictions."""
    from sweeplab.tracking import batches, tags
    from sweeplab.tracking.logged_models import download_model, log_model

    run = client.create_run(experiment_id, tags={tags.ROLE: "trial", tags.FAMILY: "mlp"})
    with tempfile.TemporaryDirectory() as tmp:
        source = download_model(client, client.get_run(source_run_id), Path(tmp) / "source")
        log_model(client, experiment_id, run.info.run_id, lambda path, _: shutil.copytree(source, path), "keras")
    batches.log_bytes(client, run.info.run_id, predictions.to_bytes(arrays), predictions.ARTIFACT)
    batches.log_metrics(client, run.info.run_id, {"final_val_accuracy": score})
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _ensemble_runs(client, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.`sweeplab.role` = 'ensemble'")


def test_candidates_disagreeing_in_shape_are_refused(sweep):
    from sweeplab.ensemble import builder as ensemble

    client, source = sweep["client"], sweep["result"].best_run_id
    experiment_id = client.create_experiment("shapes")
    with tempfile.TemporaryDirectory() as tmp:
        saved = dict(np.load(client.download_artifacts(source, predictions.ARTIFACT, tmp)))
    narrow = {k: (v[:, :5] if k.startswith(("val/", "test/")) else v) for k, v in saved.items()}
    _copy_trial(client, source, experiment_id, saved, 0.9)
    odd = _copy_trial(client, source, experiment_id, narrow, 0.8)
    with pytest.raises(EnsembleError, match=rf"disagree in output shape: run {odd}.*\(360, 5\).*\(360, 10\)"):
        ensemble.build(client, experiment_id, registered_model=REGISTERED)
    assert _ensemble_runs(client, experiment_id) == []


def test_experiment_without_finished_trials_is_a_clear_error_and_logs_nothing(sweep, capsys):
    from sweeplab.ensemble import builder as ensemble
    from sweeplab.ensemble.cli import main as ensemble_main
    from sweeplab.tracking import tags

    client = sweep["client"]
    experiment_id = client.create_experiment("nothing-finished")
    failed = client.create_run(experiment_id, tags={tags.ROLE: "trial", tags.FAMILY: "mlp"})
    client.set_terminated(failed.info.run_id, "FAILED")
    with pytest.raises(EnsembleError, match="'nothing-finished' has no finished trials"):
        ensemble.build(client, experiment_id)
    # The command says the same, without a traceback, and exits 2.
    code = ensemble_main(["--experiment", "nothing-finished", "--tracking-uri", sweep["uri"]])
    assert code == 2
    assert "has no finished trials with a final val_accuracy; nothing to ensemble" in capsys.readouterr().err
    assert _ensemble_runs(client, experiment_id) == []
    assert client.search_registered_models("name='nothing-finished-ensemble'") == []


def test_ensemble_command_filters_by_family(sweep, capsys):
    from sweeplab.ensemble.cli import main as ensemble_main

    code = ensemble_main(["--experiment", "ens", "--tracking-uri", sweep["uri"], "--family", "inception"])
    assert code == 2
    assert "matching family in ['inception']" in capsys.readouterr().err
    assert (
        ensemble_main(
            ["--experiment", "ens", "--tracking-uri", sweep["uri"], "--family", "mlp", "--top-k", "2", "--no-register"]
        )
        == 0
    )
    assert "Ensemble (MLflow run" in capsys.readouterr().out


def test_report_command_logs_its_plots(sweep, capsys):
    from sweeplab.report.cli import main as report_main

    assert report_main(["--experiment", "ens", "--tracking-uri", sweep["uri"]]) == 0
    out = capsys.readouterr().out
    assert "Leaderboard (by val_accuracy; 3 of 3 finished trials)" in out
    assert "Ensembles (newest first; test accuracy)" in out
    runs = sweep["client"].search_runs([sweep["result"].experiment_id], "tags.`sweeplab.role` = 'report'")
    names = {a.path for a in sweep["client"].list_artifacts(runs[0].info.run_id)}
    plots = {"best_so_far_by_search.png", "objective_by_family.png", "hyperparameters_vs_objective.png"}
    assert names == plots | {"pareto.csv", "pareto.png"}  # the front across searches (objective, params)


def test_report_command_with_no_log_writes_plots_and_logs_no_run(sweep, capsys, tmp_path):
    from sweeplab.report.cli import main as report_main

    client, experiment_id = sweep["client"], sweep["result"].experiment_id

    def report_runs():
        return client.search_runs([experiment_id], "tags.`sweeplab.role` = 'report'")

    before = {r.info.run_id for r in report_runs()}
    runs_before = len(client.search_runs([experiment_id], max_results=1000))
    folder = tmp_path / "plots"
    assert (
        report_main(["--experiment", "ens", "--tracking-uri", sweep["uri"], "--no-log", "--output-dir", str(folder)])
        == 0
    )
    out = capsys.readouterr().out
    assert "Leaderboard (by val_accuracy; 3 of 3 finished trials)" in out
    names = {"best_so_far_by_search.png", "objective_by_family.png", "hyperparameters_vs_objective.png"}
    assert {p.name for p in folder.iterdir()} == names | {"pareto.csv", "pareto.png"}
    for name in names | {"pareto.png"}:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"  {folder / name}" in out.splitlines()
    # Nothing logged: no report run, no run at all.
    assert {r.info.run_id for r in report_runs()} == before
    assert len(client.search_runs([experiment_id], max_results=1000)) == runs_before


HELP_PROBE = """
import runpy, sys
sys.argv = ["{module}", "--help"]
try:
    runpy.run_module("{module}", run_name="__main__")
except SystemExit as done:
    code = done.code
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)
print("exit", code, "heavy", heavy)
"""


@pytest.mark.parametrize(
    "module, options",
    [
        ("sweeplab.ensemble", ["--experiment", "--top-k", "--method", "--family", "--no-register"]),
        ("sweeplab.report", ["--experiment", "--rows", "--family", "--no-log", "--output-dir"]),
    ],
)
def test_commands_help_prints_usage_without_importing_tensorflow_or_mlflow(module, options):
    """`python -m sweeplab.ensemble --help` / `sweeplab.report --help` answer from argparse
    alone: their usage and options, exit 0, with none of TensorFlow, Keras or MLflow imported."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE.format(module=module)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"usage: python -m {module}" in done.stdout
    for option in options:
        assert option in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "exit 0 heavy []"


def log_two_head_trial(client, experiment_id: str, seed: int, x, targets):
    """A real two-head net logged as a finished trial with its predictions; returns the net."""
    import keras

    from sweeplab.data.datasets import Split
    from sweeplab.tracking import batches, tags
    from sweeplab.tracking.logged_models import log_keras_model

    class TwoHeads:
        val = test = Split({"features": x}, targets)

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    net = keras.Model(
        inputs,
        {
            "cultivar": keras.layers.Dense(3, activation="softmax", name="cultivar")(hidden),
            "alcohol": keras.layers.Dense(1, name="alcohol")(hidden),
        },
    )
    run = client.create_run(experiment_id, tags={tags.ROLE: "trial", tags.FAMILY: "multi_output"})
    log_keras_model(client, experiment_id, run.info.run_id, net, x[:5])
    batches.log_bytes(
        client, run.info.run_id, predictions.to_bytes(predictions.collect(net, TwoHeads)), predictions.ARTIFACT
    )
    batches.log_metrics(client, run.info.run_id, {"final_val_loss": float(seed)})
    client.set_terminated(run.info.run_id, "FINISHED")
    return net


def test_multi_output_ensemble_model_averages_each_head(sweep):
    """Two real two-head nets as trials: the logged ensemble returns {head: weighted average}."""
    import mlflow

    from sweeplab.ensemble import builder as ensemble

    client = sweep["client"]
    experiment_id = client.create_experiment("two-heads")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype("float32")
    targets = {"cultivar": rng.integers(0, 3, 40), "alcohol": rng.normal(size=40)}
    nets = [log_two_head_trial(client, experiment_id, seed, x, targets) for seed in (1, 2)]

    # Minimizing the summed loss of both heads.
    built = ensemble.build(client, experiment_id, objective="val_loss", maximize=False, method="optimize")
    assert built.val["loss"] <= built.best_member_val["loss"]
    assert set(built.val) == {"loss", "cultivar_loss", "cultivar_accuracy", "alcohol_loss", "alcohol_mae"}
    mlflow.set_tracking_uri(sweep["uri"])
    outputs = mlflow.pyfunc.load_model(built.model_uri).predict(x)
    order = {m.run_id: m.weight for m in built.members}
    runs = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'", order_by=["attributes.start_time ASC"])
    weights = [order.get(r.info.run_id, 0.0) for r in runs]
    for head in ("cultivar", "alcohol"):
        expected = sum(
            w * np.asarray(net.predict(x, verbose=0)[head], dtype="float64") for w, net in zip(weights, nets)
        )
        np.testing.assert_allclose(outputs[head], expected, rtol=1e-5, atol=1e-6)
