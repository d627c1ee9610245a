"""The MLflow UI: the address a sweep prints opens its runs table (checked in a
real browser over a real `mlflow ui`), and the addresses are built right."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import TINY, free_port, serving, unavailable

from sweeplab.tracking import ui
from sweeplab.tracking.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no network beyond the local server, nothing the browser would fetch for itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUNS = "#/experiments/{}/runs?workflowType=machine_learning"


def test_a_local_store_opens_on_the_local_ui_and_says_how_to_start_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db?timeout=60"
    assert ui.runs_address(uri, "3") == "http://127.0.0.1:5000/" + RUNS.format(3)
    assert ui.runs_address(uri, "3", "http://127.0.0.1:5123/") == "http://127.0.0.1:5123/" + RUNS.format(3)
    nothing_there = f"http://127.0.0.1:{free_port()}"  # whatever listens on 5000 here
    hint = ui.browse_hint(uri, "3", default_uri=uri, local_ui=nothing_there)
    assert hint.endswith("start the UI first: sweeplab ui (or make ui)")
    other = ui.browse_hint(uri, "3", default_uri="sqlite:///elsewhere/mlflow.db", local_ui=nothing_there)
    assert f"MLFLOW_TRACKING_URI='sqlite:///{tmp_path}/mlruns/mlflow.db' make ui" in other


def test_a_server_is_its_own_ui_and_its_credentials_are_never_shown():
    uri = "https://alice:s3cret@mlflow.example.org:8443/"
    address = ui.runs_address(uri, "7")
    # The browser asks for the login; a masked password in the address would only fail it.
    assert address == "https://mlflow.example.org:8443/" + RUNS.format(7)
    hint = ui.browse_hint(uri, "7")
    assert address in hint and "s3cret" not in hint
    assert "make ui" not in hint and "mlflow ui" not in hint


def test_experiments_are_tagged_so_the_ui_opens_them_on_their_runs(store, capsys):
    from mlflow import MlflowClient

    from sweeplab.tracking.store import connect

    def tracking(name):
        return SimpleNamespace(uri=store["uri"], experiment=name, artifact_location=None)

    _, uri, new_id = connect(tracking("tagged"))
    client = MlflowClient(tracking_uri=uri)
    old_id = client.create_experiment("older")  # as sweeplab made them before the tag
    connect(tracking("older"))
    for experiment_id in (new_id, old_id):
        assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND

    assert ui.main(["--tracking-uri", store["uri"]]) == 0
    printed = capsys.readouterr().out
    assert f"MLflow store: {store['uri']}" in printed
    assert f"tagged: http://127.0.0.1:5000/{RUNS.format(new_id)}" in printed


@pytest.mark.slow
def test_the_printed_address_shows_the_search_run_in_a_browser(store, make_config, tmp_path, capsys):
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM} (make test installs Debian's chromium as root)")
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    from sweeplab.app import run

    overrides = [*TINY, *store["overrides"], "ensemble=none"]
    result = run(make_config(overrides), overrides=overrides)
    printed = capsys.readouterr().out
    address = re.search(r"Browse the runs: (?:open )?(\S+)", printed).group(1)
    assert address.endswith(RUNS.format(result.experiment_id))
    run_name = MlflowClient(tracking_uri=store["uri"]).get_run(result.parent_run_id).info.run_name
    assert run_name.startswith("mlp-random-")

    port = free_port()
    command = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        store["uri"],
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--workers",
        1,
    ]
    with serving(command, port, tmp_path / "mlflow-ui.log"), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 800})
            page.goto(address.replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
            # A React app: the table fills in after its own requests.
            page.get_by_text(run_name).first.wait_for(timeout=60_000)
            page.screenshot(path=tmp_path / "runs.png")
            assert "/runs" in page.url
        finally:
            browser.close()
