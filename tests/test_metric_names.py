"""A trial's metric names come from one module, and a search ranks its trials and reports its best
score by the metric that holds the tuner's objective, whichever split the objective is on."""

import pytest
from conftest import TINY
from mlflow import MlflowClient

from sweeplab.app import run
from sweeplab.ensemble.builder import Filters, candidate_runs
from sweeplab.report.leaderboard import leaderboard
from sweeplab.tracking import metric_names
from sweeplab.tracking.queries import rank


def test_an_objective_is_held_by_its_final_validation_metric_or_by_what_the_tuner_scored():
    assert metric_names.ranking_metric("val_accuracy") == "final_val_accuracy"
    assert metric_names.ranking_metric("val_cultivar_accuracy") == "final_val_cultivar_accuracy"
    # The training split is not evaluated again when a trial ends: Keras Tuner's score holds it.
    assert metric_names.ranking_metric("loss") == "scored_loss"
    assert metric_names.ranking_metric("accuracy") == "scored_accuracy"


def test_final_metrics_name_their_split_and_list_validation_first():
    logged = {
        **metric_names.final_metrics("test", {"loss": 1.0, "accuracy": 0.5}),
        **metric_names.final_metrics("val", {"loss": 2.0}),
        "scored_loss": 3.0,
        "val_loss": 4.0,
    }
    assert set(logged) == {"test_loss", "test_accuracy", "final_val_loss", "scored_loss", "val_loss"}
    assert {key: metric_names.split_of(key) for key in logged} == {
        "test_loss": "test",
        "test_accuracy": "test",
        "final_val_loss": "val",
        "scored_loss": None,
        "val_loss": None,
    }
    assert metric_names.final_metric_names(logged) == ["final_val_loss", "test_accuracy", "test_loss"]
    assert [metric_names.shown(k) for k in ("final_val_loss", "test_loss")] == ["val_loss", "test_loss"]


def _column(table: str, name: str) -> list[float]:
    """A leaderboard column's values, top row first."""
    header, _rule, *rows = table.splitlines()[1:]
    index = header.split().index(name)
    return [float(row.split()[index]) for row in rows]


def test_a_search_by_training_loss_reports_and_ranks_by_what_the_tuner_minimized(make_config, store, capsys):
    """`tuner.objective=loss`: Keras Tuner minimizes each trial's best training loss. The search's
    best score, its `best_loss` metric and the leaderboard's order are that score's, not None and
    not the validation loss."""
    overrides = [
        *TINY,
        "tuner.max_trials=3",
        *store["overrides"],
        "ensemble=none",
        "tuner.objective=loss",
        "tuner.direction=min",
    ]
    result = run(make_config(overrides))
    printed = capsys.readouterr().out

    client = MlflowClient(store["uri"])
    trials = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(trials) == 3 and all("scored_loss" in t.data.metrics for t in trials)
    tuners_best = min(trials, key=lambda t: t.data.metrics["scored_loss"])
    assert result.best_run_id == tuners_best.info.run_id
    assert result.best_score == pytest.approx(tuners_best.data.metrics["scored_loss"])
    assert client.get_run(result.parent_run_id).data.metrics["best_loss"] == pytest.approx(result.best_score)

    table = printed[printed.index("Leaderboard (by loss;") :].split("\n\n")[0]
    shown = _column(table, "scored_loss")
    assert shown == sorted(shown) and len(shown) == 3
    assert shown[0] == pytest.approx(result.best_score, abs=1e-4)
    assert table == leaderboard(sorted(trials, key=lambda t: t.data.metrics["scored_loss"]), "loss")


def test_reports_by_another_objective_and_ensemble_candidates_rank_on_validation(store):
    """Three trials of a search by training loss whose training and validation losses disagree:
    ranked by `loss` they follow what the tuner scored; a report by `accuracy`, which no trial was
    scored by, follows `final_val_accuracy`; ensemble candidates, whose weights are chosen on
    validation, follow `final_val_loss`."""
    from sweeplab.tracking import tags

    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("disagreeing")
    for scored_loss, val_loss, val_accuracy in ((0.1, 0.9, 0.5), (0.2, 0.5, 0.9), (0.3, 0.1, 0.7)):
        run = client.create_run(experiment_id, tags={tags.ROLE: "trial"})
        metrics = {"scored_loss": scored_loss, "final_val_loss": val_loss, "final_val_accuracy": val_accuracy}
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
    trials = client.search_runs([experiment_id])

    def order(runs, key):
        return [r.data.metrics[key] for r in runs]

    assert order(rank(trials, "loss", maximize=False), "scored_loss") == [0.1, 0.2, 0.3]
    assert order(rank(trials, "accuracy", maximize=True), "final_val_accuracy") == [0.9, 0.7, 0.5]
    candidates = candidate_runs(client, experiment_id, "loss", False, Filters())
    assert order(candidates, "final_val_loss") == [0.1, 0.5, 0.9]
