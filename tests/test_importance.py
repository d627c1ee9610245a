"""Hyperparameter importance and parallel coordinates, read back through MLflow: trials whose objective
one hyperparameter decides rank it first (on runs written to a real store, in a real search, and in
`sweeplab report`); fewer than 5 finished trials log nothing and say why in one line."""

from __future__ import annotations

import random

from conftest import FIXED_MLP, TINY
from mlflow import MlflowClient

from sweeplab.report.importance import MIN_TRIALS, importance_of, log_importance, metric_key
from sweeplab.tracking import tags
from sweeplab.tracking.queries import rank, trial_runs

FILES = {"importance.csv", "importance.png", "parallel_coordinates.png"}
NONE_LINE = "[sweeplab] no hyperparameter importance"
PNG = b"\x89PNG\r\n\x1a\n"


def searched_runs(client, experiment: str, trials: int, seed: int = 0, family: str = "mlp") -> tuple[str, str]:
    """A search run and `trials` finished trial runs under it, as a search logs them: the
    learning rate decides `final_val_accuracy` (plus a little noise); the other hyperparameters are
    drawn at random and decide nothing. (experiment id, search run id); the experiment is created
    when it does not exist."""
    draw = random.Random(seed)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    search = client.create_run(experiment_id, tags={tags.ROLE: "search", tags.FAMILY: family})
    client.log_param(search.info.run_id, "tuner.objective", "val_accuracy")
    client.log_param(search.info.run_id, "tuner.direction", "max")
    for i in range(trials):
        learning_rate = [1e-5, 1e-2][i % 2]  # both values whatever the number of trials
        params = {
            "learning_rate": learning_rate,
            "units": draw.choice([16, 32, 64, 128]),
            "activation": draw.choice(["relu", "tanh", "elu"]),
            "conv/filters": draw.choice([8, 16]),  # a name with a slash, as nested spaces have
            "tuner/epochs": 2,  # Keras Tuner's bookkeeping, not a hyperparameter
        }
        trial_tags = {tags.ROLE: "trial", tags.FAMILY: family, tags.PARENT: search.info.run_id}
        run = client.create_run(experiment_id, tags=trial_tags, run_name=f"trial-{i}")
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        score = (0.9 if learning_rate == 1e-2 else 0.2) + draw.uniform(-0.02, 0.02)
        client.log_metric(run.info.run_id, "final_val_accuracy", score)
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(search.info.run_id, "FINISHED")
    return experiment_id, search.info.run_id


def artifact(client, run_id: str, name: str, folder) -> bytes:
    """An artifact of the run, as the store holds it."""
    with open(client.download_artifacts(run_id, name, str(folder)), "rb") as handle:
        return handle.read()


def csv_rows(client, run_id: str, folder) -> list[str]:
    return artifact(client, run_id, "importance.csv", folder).decode().splitlines()


def artifact_names(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def importance_metrics(client, run_id: str) -> dict[str, float]:
    return {k: v for k, v in client.get_run(run_id).data.metrics.items() if k.startswith("importance_")}


def test_the_hyperparameter_that_decides_the_objective_ranks_first(store, capsys, tmp_path):
    client = MlflowClient(store["uri"])
    experiment_id, search_id = searched_runs(client, "decided", trials=10)
    runs = rank(trial_runs(client, experiment_id, search_id), "val_accuracy", maximize=True)

    assert log_importance(client, search_id, runs, "val_accuracy", True, "decided") == sorted(FILES)
    out = capsys.readouterr().out
    assert NONE_LINE not in out  # a failure is said, not raised: it must not be what happened here
    assert "Hyperparameter importance for val_accuracy (10 trials): learning_rate" in out

    assert artifact_names(client, search_id) >= FILES
    table = csv_rows(client, search_id, tmp_path)
    assert table[0] == "hyperparameter,importance,std"
    assert [row.split(",")[0] for row in table[1:]][0] == "learning_rate"
    assert {row.split(",")[0] for row in table[1:]} == {"learning_rate", "units", "activation", "conv/filters"}
    metrics = importance_metrics(client, search_id)
    assert set(metrics) == {metric_key(n) for n in ("learning_rate", "units", "activation", "conv/filters")}
    assert max(metrics, key=metrics.get) == "importance_learning_rate"
    assert metrics["importance_learning_rate"] > 10 * max(v for k, v in metrics.items() if "learning" not in k)
    for name in ("importance.png", "parallel_coordinates.png"):
        assert artifact(client, search_id, name, tmp_path)[:8] == PNG


def test_the_importance_is_the_same_every_time(store):
    client = MlflowClient(store["uri"])
    experiment_id, search_id = searched_runs(client, "again", trials=8, seed=3)
    runs = trial_runs(client, experiment_id, search_id)
    first, second = importance_of(runs, "val_accuracy"), importance_of(list(reversed(runs)), "val_accuracy")
    assert first.ranked[0][0] == "learning_rate"
    assert first.csv() == importance_of(runs, "val_accuracy").csv()  # a seeded forest
    assert [name for name, _, _ in first.ranked] == [name for name, _, _ in second.ranked]


def test_across_families_the_family_is_one_more_choice(store):
    """A report over a multirun: trials of two families; whichever family is, the learning rate decides."""
    client = MlflowClient(store["uri"])
    experiment_id, _ = searched_runs(client, "families", trials=6, family="mlp")
    searched_runs(client, "families", trials=6, seed=1, family="residual")
    found = importance_of(trial_runs(client, experiment_id), "val_accuracy")
    assert found.axes["family"].choices == ["mlp", "residual"]
    assert [name for name, _, _ in found.ranked][0] == "learning_rate"
    assert "importance_family" in found.metrics()


def test_fewer_than_five_finished_trials_log_nothing_and_say_why(store, capsys):
    client = MlflowClient(store["uri"])
    experiment_id, search_id = searched_runs(client, "few", trials=MIN_TRIALS - 1)
    runs = trial_runs(client, experiment_id, search_id)

    assert log_importance(client, search_id, runs, "val_accuracy", True, "few") == []
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == [f"{NONE_LINE}: 4 finished trial(s) logged final_val_accuracy; it takes at least 5"]
    assert artifact_names(client, search_id) == set()
    assert importance_metrics(client, search_id) == {}


def test_a_store_that_refuses_the_importance_is_one_line_and_the_caller_goes_on(store, capsys):
    client = MlflowClient(store["uri"])
    experiment_id, search_id = searched_runs(client, "refused", trials=6)
    runs = trial_runs(client, experiment_id, search_id)

    assert log_importance(client, "0" * 32, runs, "val_accuracy", True, "refused") == []  # no such run
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("Hyperparameter importance")
    assert lines[1].startswith(f"{NONE_LINE}: MlflowException")


def test_the_report_command_logs_the_importance_on_its_run(store, capsys, tmp_path):
    from sweeplab.report.cli import main as report_main

    client = MlflowClient(store["uri"])
    experiment_id, _ = searched_runs(client, "reported", trials=8)

    assert report_main(["--experiment", "reported", "--tracking-uri", store["uri"]]) == 0
    assert "Hyperparameter importance for val_accuracy (8 trials): learning_rate" in capsys.readouterr().out
    (report,) = client.search_runs([experiment_id], f"tags.`{tags.ROLE}` = 'report'")
    assert artifact_names(client, report.info.run_id) >= FILES
    table = csv_rows(client, report.info.run_id, tmp_path)
    assert table[1].startswith("learning_rate,")
    metrics = importance_metrics(client, report.info.run_id)
    assert max(metrics, key=metrics.get) == "importance_learning_rate"

    folder = tmp_path / "plots"
    assert (
        report_main(
            ["--experiment", "reported", "--tracking-uri", store["uri"], "--no-log", "--output-dir", str(folder)]
        )
        == 0
    )
    assert {p.name for p in folder.iterdir()} >= FILES
    assert (folder / "importance.csv").read_text().splitlines()[1].startswith("learning_rate,")
    assert (folder / "parallel_coordinates.png").read_bytes()[:8] == PNG


def test_a_search_where_the_learning_rate_decides_logs_it_first_on_its_search_run(store, make_config, capsys, tmp_path):
    """A real random search (8 trials packed in one graph, 2 epochs): a learning rate of 1e-5 learns
    next to nothing in 2 epochs, 1e-2 learns digits; the units and the dropout vary too."""
    from sweeplab.app import run

    space = [o for o in FIXED_MLP if not o.startswith(("model.space.units", "model.space.dropout"))]
    overrides = [
        *TINY,
        *store["overrides"],
        *space,
        "tuner.max_trials=8",
        "tuner.pack=8",
        "ensemble=none",
        "model.space.learning_rate={type: choice, values: [1.0e-5, 1.0e-2], default: 1.0e-2}",
    ]
    result = run(make_config(overrides))
    assert result.finished == 8
    out = capsys.readouterr().out
    assert "Hyperparameter importance for val_accuracy (8 trials): learning_rate" in out

    client = MlflowClient(store["uri"])
    assert artifact_names(client, result.parent_run_id) >= FILES
    table = csv_rows(client, result.parent_run_id, tmp_path)
    assert [row.split(",")[0] for row in table[1:]][0] == "learning_rate"
    metrics = importance_metrics(client, result.parent_run_id)
    assert max(metrics, key=metrics.get) == "importance_learning_rate"
