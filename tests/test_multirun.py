"""Hydra multiruns: one search per combination, all in one MLflow experiment, then
the leaderboard across all searches and one ensemble across the jobs per data set and task."""

import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow import MlflowClient
from processes import env
from stores import sqlite_uri

TINY_CLI = ["++tuner.max_epochs=2", "tuner.max_trials=2", "trainer.epochs=2", "trainer.verbose=0"]
ALL_SEARCHES = "[sweeplab] experiment 'multi', all searches"


def _run_multirun(tmp_path, sweep: list[str], *extra) -> subprocess.CompletedProcess:
    """`python -m sweeplab -m SWEEP ...` into experiment 'multi', as it ended."""
    sqlite_uri(tmp_path / "mlruns")  # the store the jobs find by default, made before they start
    return subprocess.run(
        [sys.executable, "-m", "sweeplab", "-m", *sweep, *TINY_CLI, "tracking.experiment=multi", *extra],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _multirun(tmp_path, sweep: list[str], *extra):
    """`python -m sweeplab -m SWEEP ...` into experiment 'multi', which must succeed; (client, stdout)."""
    result = _run_multirun(tmp_path, sweep, *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "database is locked" not in output
    assert "Traceback" not in output
    return MlflowClient(tracking_uri=sqlite_uri(tmp_path / "mlruns")), result.stdout


def _table(lines: list[str]) -> list[dict[str, str]]:
    """A leaderboard's rows as {column: cell}: header, dashes, rows up to the first blank line.
    Cells are left-aligned under the header and may be empty, so columns come from the dashes."""
    header, dashes, *rest = lines
    spans, start = [], 0
    for width in map(len, dashes.split("  ")):
        spans.append((start, start + width))
        start += width + 2
    names = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in rest:
        if not line.strip():
            break
        rows.append({name: line[a:b].strip() for name, (a, b) in zip(names, spans)})
    return rows


def _check_searches_and_trials(by_role: dict, group: str, choices: list[str], choice_of) -> tuple[dict, list]:
    """One FINISHED search per job, tagged with its choice, each with its trials, all FINISHED.
    Returns {search run id: its choice} and the trials."""
    # One search run per job, each FINISHED and tagged with its own choice.
    searches = by_role["search"]
    assert sorted(choice_of(s) for s in searches) == sorted(choices)
    assert {s.info.status for s in searches} == {"FINISHED"}
    for search in searches:
        assert f"{group}={choice_of(search)}" in search.data.tags["sweeplab.overrides"].split(" ")
    choice_by_search = {s.info.run_id: choice_of(s) for s in searches}

    # Every trial belongs to one of those searches, finished, and each search has trials.
    trials = by_role["trial"]
    assert {t.info.status for t in trials} == {"FINISHED"}
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == set(choice_by_search)
    for search in searches:
        mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == search.info.run_id]
        assert mine and int(search.data.metrics["trials_finished"]) == len(mine)
        assert {t.data.tags["sweeplab.family"] for t in mine} == {search.data.tags["sweeplab.family"]}
    return choice_by_search, trials


def _check_cross_job_leaderboard(stdout: str, trials: list) -> None:
    """The leaderboard across all searches, printed once at the end: every trial of every job, best first."""
    lines = stdout.splitlines()
    assert lines.count(ALL_SEARCHES) == 1
    at = lines.index(ALL_SEARCHES)
    assert lines[at + 1] == f"Leaderboard (by val_accuracy; {len(trials)} of {len(trials)} finished trials)"
    rows = _table(lines[at + 2 :])
    assert sorted((r["run"], r["family"], r["val_accuracy"]) for r in rows) == sorted(
        (t.info.run_name, t.data.tags["sweeplab.family"], f"{t.data.metrics['final_val_accuracy']:.4f}") for t in trials
    )
    scores = [float(r["val_accuracy"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert [r["#"] for r in rows] == [str(i) for i in range(1, len(trials) + 1)]
    # Each job's lines start with its name (`[mlp/random] `); the end's have none.
    assert at > max(i for i, line in enumerate(lines) if "] [sweeplab] starting search" in line)


def _check_cross_job_ensemble(client, by_role: dict, trials: list) -> tuple:
    """One ensemble, built after every job ended, over the trials of all jobs, registered once.
    Returns the ensemble run and its members' run ids."""
    (ensemble,) = by_role["ensemble"]
    assert ensemble.info.status == "FINISHED"
    assert ensemble.info.start_time >= max(s.info.end_time for s in by_role["search"])
    params = ensemble.data.params
    assert int(params["ensemble.candidates"]) == min(int(params["ensemble.top_k"]), len(trials))
    members = params["members"].split(",")
    trial_by_id = {t.info.run_id: t for t in trials}
    for i, member in enumerate(members):
        assert params[f"member_{i}.run_id"] == member
        trial = trial_by_id[member]  # a trial of one of the jobs
        assert params[f"member_{i}.family"] == trial.data.tags["sweeplab.family"]
    assert f"member_{len(members)}.run_id" not in params
    # The multirun registered it once (ensemble.registered_model defaults to <experiment>-ensemble).
    versions = client.search_model_versions("name='multi-ensemble'")
    assert [v.run_id for v in versions] == [ensemble.info.run_id]
    return ensemble, members


def _check_end_product(client, stdout: str, group: str, choices: list[str], choice_of) -> dict:
    """One FINISHED search per job, tagged with its choice; the cross-job leaderboard;
    one ensemble across the jobs. `choice_of(search run)` reads a search's choice from its tags.
    Returns {search run id: its choice}, the trials and the ensemble run."""
    experiment = client.get_experiment_by_name("multi")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_role = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("sweeplab.role"), []).append(run)

    choice_by_search, trials = _check_searches_and_trials(by_role, group, choices, choice_of)
    _check_cross_job_leaderboard(stdout, trials)
    ensemble, members = _check_cross_job_ensemble(client, by_role, trials)
    trial_by_id = {t.info.run_id: t for t in trials}
    return {"searches": choice_by_search, "trials": trial_by_id, "ensemble": ensemble, "members": members}


@pytest.mark.slow
def test_multirun_over_tuners(tmp_path):
    client, stdout = _multirun(tmp_path, ["tuner=random,hyperband"])
    found = _check_end_product(
        client, stdout, "tuner", ["hyperband", "random"], lambda s: s.data.tags["sweeplab.tuner"]
    )
    kind_of = {t.info.run_id: found["searches"][t.data.tags["mlflow.parentRunId"]] for t in found["trials"].values()}
    # tuner.max_trials=2 for the random search; Hyperband's brackets choose their own number,
    # and only its trials carry Hyperband's epoch budget.
    assert list(kind_of.values()).count("random") == 2
    for run_id, trial in found["trials"].items():
        assert ("tuner/epochs" in trial.data.params) == (kind_of[run_id] == "hyperband")


@pytest.mark.slow
def test_multirun_over_families_with_two_parallel_jobs(tmp_path):
    client, stdout = _multirun(tmp_path, ["model=mlp,residual"], "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    found = _check_end_product(client, stdout, "model", ["mlp", "residual"], lambda s: s.data.tags["sweeplab.family"])
    assert len(found["trials"]) == 4  # tuner.max_trials=2 in each job
    # The ensemble mixes the jobs: members of both families (undertrained nets of two kinds
    # complement each other: about 0.73 validation accuracy together against 0.59 for the best alone).
    ensemble = found["ensemble"].data.params
    assert {ensemble[f"member_{i}.family"] for i in range(len(found["members"]))} == {"mlp", "residual"}


def _runs_by_role(client) -> dict[str, list]:
    experiment = client.get_experiment_by_name("multi")
    by_role = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        by_role.setdefault(run.data.tags.get("sweeplab.role"), []).append(run)
    return by_role


def _trained(run) -> tuple:
    """What makes a trial's model here (one data set, one seed): its family and hyperparameters."""
    return run.data.tags["sweeplab.family"], tuple(sorted(run.data.params.items()))


TWO_TUNERS_TWO_FAMILIES = ["tuner=random,bayesian", "model=mlp,mlp_variant"]
PARALLEL = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


@pytest.mark.slow
def test_multirun_over_label_encodings_and_tuners_ends_with_one_ensemble(tmp_path):
    """mlp (integer labels, softmax) and mlp_variant (one-hot targets, sigmoid, MSE) on one digits
    split are one data set: one ensemble, exit 0. Random and Bayesian searches with one seed train the
    same trials: each counts once. A member's predictions made unreadable: the same sweep fails loudly."""
    client, stdout = _multirun(tmp_path, TWO_TUNERS_TWO_FAMILIES, *PARALLEL)
    by_role = _runs_by_role(client)
    assert len(by_role["search"]) == 4
    trials = by_role["trial"]
    assert len(trials) == 6  # mlp_variant's space is one point: one trial per search
    (ensemble,) = by_role["ensemble"]
    params, metrics = ensemble.data.params, ensemble.data.metrics
    candidates = [client.get_run(c) for c in params["ensemble.candidate_runs"].split(",")]
    assert sorted(map(_trained, candidates)) == sorted(set(map(_trained, trials)))  # each model once
    assert {c.data.tags["sweeplab.family"] for c in candidates} == {"mlp", "mlp_variant"}
    assert params["ensemble.duplicates"] == "3"
    assert "3 trial(s) counted once: the same trained model as another candidate" in stdout
    assert metrics["ensemble_val_accuracy"] >= metrics["best_member_val_accuracy"]
    for i in range(len(params["members"].split(","))):
        assert params[f"member_{i}.normalised"] == (
            "output" if params[f"member_{i}.family"] == "mlp_variant" else "none"
        )
    assert [v.run_id for v in client.search_model_versions("name='multi-ensemble'")] == [ensemble.info.run_id]
    assert "no ensemble" not in stdout

    member = params["members"].split(",")[0]
    path = Path(unquote(urlparse(client.get_run(member).info.artifact_uri).path)) / "predictions.npz"
    path.write_bytes(b"not an npz")
    again = _run_multirun(tmp_path, TWO_TUNERS_TWO_FAMILIES)  # one job after another: the jobs are not the point
    assert again.returncode == 1, (again.stdout + again.stderr)[-3000:]
    assert "sweeplab: the multirun's searches finished, but its end failed: " in again.stderr
    assert "Traceback" in again.stderr
    after = _runs_by_role(client)
    assert len(after["trial"]) == 6 and len(after["ensemble"]) == 1  # resumed: nothing retrained, nothing logged


@pytest.mark.slow
def test_multirun_over_data_sets_ends_with_one_ensemble_per_data_set(tmp_path):
    client, stdout = _multirun(
        tmp_path, ["data=digits,wine_multi"], "tuner.objective=val_loss", "tuner.direction=min", *PARALLEL
    )
    by_role = _runs_by_role(client)
    data_of = {s.info.run_id: s.data.params["data.name"] for s in by_role["search"]}
    assert sorted(data_of.values()) == ["digits", "wine_multi"]
    ensembles = {e.data.tags["sweeplab.ensemble_group"]: e for e in by_role["ensemble"]}
    assert sorted(ensembles) == ["digits", "wine_multi"]
    for name, ensemble in ensembles.items():
        assert ensemble.info.status == "FINISHED"
        candidates = ensemble.data.params["ensemble.candidate_runs"].split(",")
        trials = [t for t in by_role["trial"] if data_of[t.data.tags["mlflow.parentRunId"]] == name]
        assert sorted(candidates) == sorted(t.info.run_id for t in trials)  # its own data set's, all of them
        assert set(ensemble.data.params["members"].split(",")) <= set(candidates)
        versions = client.search_model_versions(f"name='multi-ensemble-{name}'")
        assert [v.run_id for v in versions] == [ensemble.info.run_id]
        assert f"Ensemble of {name} (MLflow run {ensemble.info.run_id}" in stdout
    # Each ensemble was scored on its own data set's heads.
    assert "ensemble_val_cultivar_accuracy" in ensembles["wine_multi"].data.metrics
    assert "ensemble_val_accuracy" in ensembles["digits"].data.metrics
    assert client.search_registered_models("name='multi-ensemble'") == []
