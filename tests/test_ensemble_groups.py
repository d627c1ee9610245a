"""Ensembles over several searches: members trained on other encodings of the same labels made
comparable, the same trained model counted once, a group that cannot make an ensemble skipped in
one line, and a failure to build a possible one failing loudly. Real searches into a real store."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from conftest import TINY, compose_config
from stores import sqlite_uri

from sweeplab.ensemble import encoding
from sweeplab.errors import SweeplabError
from sweeplab.tracking import keras_average, predictions

# --- encodings, on known answers ---------------------------------------------------------------

LABELS = np.array([0, 1, 2, 1])
ONE_HOT = np.eye(3, dtype="float32")[LABELS]
SOFTMAX = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]], dtype="float32")
SIGMOID = np.array([[0.9, 0.5, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.3], [0.9, 0.95, 0.0]], dtype="float32")


def _saved(outputs: np.ndarray, targets: np.ndarray) -> predictions.Predictions:
    arrays = {}
    for split in ("val", "test"):
        arrays[f"{split}/output"], arrays[f"y_{split}/output"] = outputs, targets
    return predictions.Predictions(arrays)


def test_integer_and_one_hot_targets_of_the_same_labels_are_one_data_set():
    softmax, sigmoid = _saved(SOFTMAX, LABELS), _saved(SIGMOID, ONE_HOT)
    assert encoding.signature(softmax) == encoding.signature(sigmoid)
    other_rows = _saved(SIGMOID, ONE_HOT[[1, 0, 2, 3]])
    assert encoding.signature(other_rows) != encoding.signature(softmax)

    scores = encoding.comparable([softmax, sigmoid])
    # Scored on the labels; the sigmoid member normalised, the softmax one as it was.
    np.testing.assert_array_equal(scores.targets["val"]["output"], LABELS)
    assert scores.normalised == [[], ["output"]]
    assert scores.outputs["test"][0]["output"] is softmax.outputs["test"]["output"]
    normalised = scores.outputs["val"][1]["output"]
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0)
    np.testing.assert_array_equal(normalised.argmax(axis=1), SIGMOID.argmax(axis=1))  # its accuracy kept
    np.testing.assert_allclose(normalised[0], np.array([0.9, 0.5, 0.1]) / 1.5, rtol=1e-6)


def test_members_of_one_encoding_keep_their_scores():
    one_hot = encoding.comparable([_saved(SIGMOID, ONE_HOT), _saved(SIGMOID[::-1].copy(), ONE_HOT)])
    assert one_hot.normalised == [[], []]  # trained with MSE on one-hot targets: scored so
    np.testing.assert_array_equal(one_hot.targets["val"]["output"], ONE_HOT)
    labels = encoding.comparable([_saved(SOFTMAX, LABELS), _saved(SOFTMAX[::-1].copy(), LABELS)])
    assert labels.normalised == [[], []]


def test_the_logged_model_normalises_as_the_weights_were_chosen():
    scores = np.array([[0.2, -0.1, 0.6], [-1.0, -2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 1.0, 0.0]])
    expected = [[0.25, 0.0, 0.75], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], [0.75, 0.25, 0.0]]
    np.testing.assert_allclose(encoding.to_probabilities(scores), expected)
    np.testing.assert_array_equal(keras_average.to_probabilities(scores), encoding.to_probabilities(scores))


# --- real searches -----------------------------------------------------------------------------

MLP = ["model=mlp", "model.space.learning_rate=0.001"]
# The lab variant trained with Adam: about as good as the MLP after two epochs, and unlike it.
VARIANT = ["model=mlp_variant", "model.optimizer=adam", "model.learning_rate=0.003"]


def _config(root: Path, experiment: str, extra: list[str]):
    uri = sqlite_uri(root / "mlruns")
    return compose_config(
        [*TINY, f"tracking.uri={uri}", f"state_dir={root / 'state'}", f"tracking.experiment={experiment}", *extra]
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three searches into one experiment: the MLP by the random and by the Bayesian tuner (the same
    seed: the same two trials), the lab variant on one-hot targets; then the multirun's end."""
    from mlflow import MlflowClient

    from sweeplab.app import finish_experiment, run
    from sweeplab.config.validation import validate

    root = tmp_path_factory.mktemp("mixed")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        searches = [[*MLP, "tuner=random"], [*MLP, "tuner=bayesian"], VARIANT]
        results = [run(_config(root, "mixed", extra), build_ensemble=False) for extra in searches]
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            finish_experiment(validate(_config(root, "mixed", [])))
        client = MlflowClient(results[0].tracking_uri)
        (ensemble,) = client.search_runs([results[0].experiment_id], "tags.`sweeplab.role` = 'ensemble'")
        yield {"client": client, "results": results, "out": output.getvalue(), "ensemble": ensemble, "root": root}


def _members(ensemble) -> list[tuple[str, float]]:
    params = ensemble.data.params
    return [(m, float(w)) for m, w in zip(params["members"].split(","), params["weights"].split(","))]


def test_one_ensemble_mixes_both_encodings_when_that_helps_on_validation(mixed):
    client, ensemble = mixed["client"], mixed["ensemble"]
    params, metrics = ensemble.data.params, ensemble.data.metrics
    families = {i: params[f"member_{i}.family"] for i in range(len(_members(ensemble)))}
    assert set(families.values()) == {"mlp", "mlp_variant"}
    assert metrics["ensemble_val_accuracy"] > metrics["best_member_val_accuracy"]
    for i, family in families.items():  # sigmoid outputs on one-hot targets: normalised
        assert params[f"member_{i}.normalised"] == ("output" if family == "mlp_variant" else "none")
    # One group: registered under the experiment's name, as a single search's ensemble is.
    assert [v.run_id for v in client.search_model_versions("name='mixed-ensemble'")] == [ensemble.info.run_id]
    assert "[sweeplab] no ensemble" not in mixed["out"]


def test_recorded_scores_are_those_of_the_normalised_members(mixed):
    client, ensemble = mixed["client"], mixed["ensemble"]
    metrics = ensemble.data.metrics
    weighted = []
    for run_id, weight in _members(ensemble):
        with tempfile.TemporaryDirectory() as tmp:
            weighted.append(
                (weight, predictions.Predictions.load(client.download_artifacts(run_id, predictions.ARTIFACT, tmp)))
            )
    labels = next(p for _, p in weighted if p.targets["test"]["output"].ndim == 1).targets["test"]["output"]

    def mixture(normalise: bool) -> np.ndarray:
        scores = [p.outputs["test"]["output"].astype("float64") for _, p in weighted]
        scores = [encoding.to_probabilities(s) if normalise else s for s in scores]
        return sum(w * s for (w, _), s in zip(weighted, scores))

    def loss(mixed_scores: np.ndarray) -> float:
        return float(-np.mean(np.log(np.clip(mixed_scores[np.arange(len(labels)), labels], 1e-7, 1.0))))

    averaged = mixture(normalise=True)
    assert float(np.mean(averaged.argmax(axis=1) == labels)) == pytest.approx(
        metrics["ensemble_test_accuracy"], abs=1e-9
    )
    assert loss(averaged) == pytest.approx(metrics["ensemble_test_loss"], abs=1e-4)
    assert abs(loss(mixture(normalise=False)) - metrics["ensemble_test_loss"]) > 1e-3  # normalising mattered


def test_serving_the_mixed_ensemble_gives_the_accuracy_it_logged(mixed):
    import mlflow

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets

    mlflow.set_tracking_uri(mixed["results"][0].tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{mixed['ensemble'].info.run_id}/model")
    dataset = datasets.load(validate(_config(mixed["root"], "mixed", [])).data, 42)
    probabilities = model.predict(dataset.test.x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.test.y))
    assert accuracy == pytest.approx(mixed["ensemble"].data.metrics["ensemble_test_accuracy"], abs=1e-6)


def test_the_same_trained_model_counts_once(mixed):
    client, ensemble = mixed["client"], mixed["ensemble"]
    random_search, bayesian_search, _ = mixed["results"]
    trials = client.search_runs([random_search.experiment_id], "tags.`sweeplab.role` = 'trial'")

    def trained(run) -> tuple:
        return run.data.tags["sweeplab.family"], tuple(sorted(run.data.params.items()))

    by_search = {}
    for trial in trials:
        by_search.setdefault(trial.data.tags["mlflow.parentRunId"], set()).add(trained(trial))
    # The premise: both tuners, seeded alike, trained the same two models.
    assert by_search[random_search.parent_run_id] == by_search[bayesian_search.parent_run_id]
    candidates = ensemble.data.params["ensemble.candidate_runs"].split(",")
    assert len(candidates) == 3  # two MLPs and the variant, out of five finished trials
    assert len({trained(client.get_run(c)) for c in candidates}) == 3
    assert ensemble.data.params["ensemble.duplicates"] == "2"
    assert "2 trial(s) counted once: the same trained model as another candidate" in mixed["out"]


def test_a_possible_ensemble_that_cannot_be_read_fails_loudly(mixed):
    """A member's predictions corrupted in the store: the multirun's end exits non-zero with the
    reason (Hydra would turn an exception into a warning), and logs no ensemble run."""
    from sweeplab.app import finish_experiment
    from sweeplab.config.validation import validate

    client, experiment_id = mixed["client"], mixed["results"][0].experiment_id
    member = _members(mixed["ensemble"])[0][0]
    path = Path(unquote(urlparse(client.get_run(member).info.artifact_uri).path)) / predictions.ARTIFACT
    kept = path.read_bytes()
    path.write_bytes(b"not an npz")
    try:
        with pytest.raises(SystemExit) as stopped, contextlib.redirect_stdout(io.StringIO()):
            finish_experiment(validate(_config(mixed["root"], "mixed", [])))
    finally:
        path.write_bytes(kept)
    assert str(stopped.value).startswith("sweeplab: the multirun's searches finished, but its end failed: ")
    assert not isinstance(stopped.value.__cause__, SweeplabError)
    ensembles = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'ensemble'")
    assert [e.info.run_id for e in ensembles] == [mixed["ensemble"].info.run_id]


def test_a_search_with_a_single_model_ends_without_an_ensemble_in_one_line(tmp_path, monkeypatch, capsys):
    """The lab variant's space is one point: one trial, so no ensemble; the search still succeeds."""
    from mlflow import MlflowClient

    from sweeplab.app import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run(_config(tmp_path, "alone", ["model=mlp_variant"]))
    assert result.finished == 1 and result.ensemble_run_id is None
    lines = [line for line in capsys.readouterr().out.splitlines() if "ensemble" in line.lower()]
    assert lines == [
        "[sweeplab] no ensemble of digits: 1 distinct candidate(s) with a logged model and predictions; "
        "an ensemble needs at least 2"
    ]
    client = MlflowClient(result.tracking_uri)
    assert client.search_runs([result.experiment_id], "tags.`sweeplab.role` = 'ensemble'") == []


def test_a_search_into_an_experiment_of_two_data_sets_ensembles_its_own(tmp_path, monkeypatch, capsys):
    """digits, then wine_multi, into one experiment: the second search's ensemble is of its own data
    set, registered under a name that says it; `build` refuses the mix; the command makes one per data set."""
    from mlflow import MlflowClient

    from sweeplab.app import run
    from sweeplab.ensemble import builder
    from sweeplab.ensemble.cli import main as ensemble_main
    from sweeplab.errors import EnsembleError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    by_loss = ["tuner.objective=val_loss", "tuner.direction=min"]
    run(_config(tmp_path, "two-data", ["model=mlp", *by_loss]), build_ensemble=False)
    wine = run(_config(tmp_path, "two-data", ["model=mlp", "data=wine_multi", *by_loss]))
    client = MlflowClient(wine.tracking_uri)
    (ensemble,) = client.search_runs([wine.experiment_id], "tags.`sweeplab.role` = 'ensemble'")
    assert ensemble.info.run_id == wine.ensemble_run_id
    assert ensemble.data.tags["sweeplab.ensemble_group"] == "wine_multi"
    assert ensemble.data.params["ensemble.candidate_runs"].split(",") == [
        r.info.run_id
        for r in client.search_runs(
            [wine.experiment_id],
            f"tags.`mlflow.parentRunId` = '{wine.parent_run_id}'",
            order_by=["metrics.final_val_loss ASC"],
        )
    ]
    assert [v.run_id for v in client.search_model_versions("name='two-data-ensemble-wine_multi'")] == [
        wine.ensemble_run_id
    ]
    assert f"Ensemble of wine_multi (MLflow run {wine.ensemble_run_id}" in capsys.readouterr().out

    with pytest.raises(EnsembleError, match=r"are 2 data sets or tasks \((digits, wine_multi|wine_multi, digits)\)"):
        builder.build(client, wine.experiment_id, objective="val_loss", maximize=False)
    assert ensemble_main(["--experiment", "two-data", "--tracking-uri", wine.tracking_uri, "--no-register"]) == 0
    out = capsys.readouterr().out
    assert "Ensemble of digits (" in out and "Ensemble of wine_multi (" in out
    groups = [
        e.data.tags["sweeplab.ensemble_group"]
        for e in client.search_runs([wine.experiment_id], "tags.`sweeplab.role` = 'ensemble'")
    ]
    assert sorted(groups) == ["digits", "wine_multi", "wine_multi"]


def test_the_command_says_why_it_built_nothing(mixed, capsys):
    from sweeplab.ensemble.cli import main as ensemble_main

    variant_search = mixed["results"][2].parent_run_id
    argv = ["--experiment", "mixed", "--tracking-uri", mixed["results"][0].tracking_uri, "--search", variant_search]
    assert ensemble_main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "sweeplab: no ensemble could be built: digits: 1 distinct candidate(s) with a logged model and "
        "predictions; an ensemble needs at least 2"
    )
