"""Every option of every config group composes into what it selects, and into what it did
before the defaults moved into the schema's bases; no option file repeats a default; bad
input fails early with a clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT

from sweeplab.app import run
from sweeplab.config.identity import search_key
from sweeplab.config.validation import validate
from sweeplab.errors import ConfigError


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


GROUP_OPTIONS = [
    (group, option) for group in sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir()) for option in _options(group)
]


def test_every_group_has_options():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"data", "model", "tuner", "trainer", "tracking", "sweep"} <= groups


def _option_file(group: str, option: str) -> dict:
    """What an option file sets itself (its `defaults` list aside)."""
    return {k: v for k, v in _option_yaml(group, option).items() if k != "defaults"}


def _option_yaml(group: str, option: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"), resolve=False)


def _leaves(node, path=()):
    """(dotted path, value) of every non-mapping value, skipping `${...}` interpolations
    (their resolved value is checked where it matters)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif not (isinstance(node, str) and node.startswith("${")):
        yield ".".join(path), node


def _at(resolved: dict, dotted: str):
    node = resolved
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} missing from the composed config"
        node = node[part]
    return node


def _assert_selected(app_cfg, group: str, option: str, except_keys=frozenset(), space_changes=None) -> None:
    """`group=option` is what the validated config holds: the option file's values in place
    (but `except_keys`, which a sweep sets itself), and the option's identity in the typed
    config; `space_changes`: a sweep's own `model.space` entries."""
    for key, value in _leaves(_option_file(group, option)):
        if f"{group}.{key}" not in except_keys:
            assert _at(app_cfg.resolved, f"{group}.{key}") == value, f"{group}.{key}"
    if group == "data":
        assert app_cfg.data.name == option
    elif group == "model":
        from sweeplab.models import get_family

        assert app_cfg.family == option
        assert type(app_cfg.model) is get_family(option).Config
        space = {**_option_file("model", option)["space"], **(space_changes or {})}
        # Every entry of the option's space is parsed; the mappings are searched, plain values fixed.
        assert space and sorted(app_cfg.space.hyperparameters) == sorted(space)
        assert sorted(app_cfg.space.searched) == sorted(k for k, v in space.items() if isinstance(v, dict))
    elif group == "tuner":
        assert app_cfg.tuner.kind.value == option
    elif group == "ensemble":
        assert app_cfg.ensemble.enabled is (option != "none")
    elif group == "tracking":
        # MLFLOW_TRACKING_URI is unset: the local store's default, or the server's address.
        assert app_cfg.tracking.uri == {"local": None, "server": "http://127.0.0.1:5000"}[option]


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_of_every_group_composes_into_what_it_selects(make_config, monkeypatch, group, option):
    """Each option of each group in conf/ (sweeps included) composes and validates, and the
    validated config holds what the option says: its own values, the option itself (data set,
    family and search space, tuner kind, ensemble on/off, tracking URI), and for a sweep the
    group options it overrides plus its own keys."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    app_cfg = validate(make_config([f"{group}={option}"]))
    if group != "sweep":
        _assert_selected(app_cfg, group, option)
        return
    body = {k: v for k, v in _option_file("sweep", option).items() if k != "hydra"}
    overridden = {key for key, _ in _leaves(body)}
    selected = _sweep_selection(option)
    for chosen_group, chosen in selected.items():
        _assert_selected(
            app_cfg, chosen_group, chosen, except_keys=overridden, space_changes=body.get("model", {}).get("space")
        )
    for key, value in _leaves(body):
        assert _at(app_cfg.resolved, key) == value, key


def _sweep_selection(option: str) -> dict[str, str]:
    """{group: option} a sweep's defaults list picks."""
    selected = {}
    for entry in _option_yaml("sweep", option)["defaults"]:
        ((target, chosen),) = entry.items()
        selected[target.removeprefix("override /")] = chosen
    assert selected, "a sweep picks group options"
    return selected


# Every option's composed config (resolved, without the `hydra` node), as it was before the
# defaults moved into the schema's bases. After a deliberate change: python tests/test_config.py
SNAPSHOT = Path(__file__).with_name("composed_configs.json")
SNAPSHOT_KEYS = ["config", *(f"{group}={option}" for group, option in GROUP_OPTIONS)]
# A sweep or a model with another tuner: a key one option sets and another lacks shows only in pairs.
SNAPSHOT_KEYS += [
    f"{group}={option} tuner={tuner}"
    for group, option in GROUP_OPTIONS
    if group in ("sweep", "model")
    for tuner in sorted(o for g, o in GROUP_OPTIONS if g == "tuner")
]


def composed(compose, overrides: list[str]) -> dict:
    """The config `overrides` compose into, as plain data."""
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(compose(overrides), resolve=True)
    resolved.pop("hydra", None)
    return resolved


def _differences(expected, actual, path: str = "") -> list[str]:
    """Every key path where `actual` differs from `expected`. A whole number may come back as the
    float the schema types it as (tuner.oracle.lease_s: 30 -> 30.0): the validated config is the same."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{path}{k}: missing" for k in expected if k not in actual]
        found += [f"{path}{k}: not expected (= {actual[k]!r})" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            found += _differences(expected[key], actual[key], f"{path}{key}.")
        return found
    numbers = {type(expected), type(actual)} <= {int, float}
    if expected != actual or not (type(expected) is type(actual) or numbers):
        return [f"{path.rstrip('.')}: {expected!r} before, {actual!r} now"]
    return []


def test_the_snapshot_holds_every_option():
    assert sorted(json.loads(SNAPSHOT.read_text())) == sorted(SNAPSHOT_KEYS)


@pytest.mark.parametrize("key", SNAPSHOT_KEYS)
def test_every_option_composes_as_in_the_snapshot(make_config, monkeypatch, key):
    """Moving defaults between the YAML files and the schema changes no composed config, and so
    no search's identity (a changed one would start every search afresh instead of resuming it)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = json.loads(SNAPSHOT.read_text())[key]
    actual = composed(make_config, [] if key == "config" else key.split())
    differences = _differences(expected, actual)
    assert not differences, f"{key} composes differently: " + "; ".join(sorted(differences))
    assert search_key(actual) == search_key(expected), f"{key}: its searches would no longer resume"


def _base_of(group: str, option: str) -> dict:
    """The base an option file extends: its defaults list is its base, then `_self_`."""
    from sweeplab.config.store import bases

    defaults = _option_yaml(group, option).get("defaults")
    assert defaults and len(defaults) == 2 and defaults[1] == "_self_", f"{group}/{option}.yaml extends no base"
    name = defaults[0].removeprefix("/").removesuffix("@_here_")
    assert defaults[0] == f"/{name}@_here_" and name in bases(), f"{group}/{option}.yaml: {defaults[0]}"
    return bases()[name]


_ABSENT = object()


def _lookup(node, dotted: str):
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


# Repeats kept on purpose: with another tuner than the sweep's own, the key is part of the search's
# identity (config/identity.py), and searches started before it became a default must still resume.
KEPT = {("sweep", "residual"): ("tuner.max_epochs",)}


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_no_option_file_repeats_a_default(make_config, monkeypatch, group, option):
    """An option file holds only what differs from what it extends: a group option from its
    base (the schema's defaults), a sweep from the group options it picks."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if group == "sweep":
        picked = _sweep_selection(option)
        base = composed(make_config, [f"{g}={o}" for g, o in picked.items()])
        body = {k: v for k, v in _option_file(group, option).items() if k != "hydra"}
    else:
        base, body = _base_of(group, option), _option_file(group, option)
    repeated = [
        key for key, value in _leaves(body) if _lookup(base, key) == value and key not in KEPT.get((group, option), ())
    ]
    assert not repeated, f"{group}/{option}.yaml repeats the default of {repeated}"


BAD_INPUTS = [
    (["+trainer.epoch=3"], "trainer.epoch", "epochs"),
    (["trainer.epochs=abc"], "trainer.epochs", "an integer"),
    (["trainer.epochs=0"], "trainer.epochs", ">= 1"),
    (["tuner.direction=up"], "tuner.direction", "'max', 'min'"),
    (["tuner.workers=-1"], "tuner.workers", "an integer >= "),  # below any valid worker count
    (["model.space.activation.values=[relux]"], "model.space.activation", "'tanh'"),
    (["model.space.initializer.values=[glorot]"], "model.space.initializer", "'he_normal'"),
    (["model.space.units.min=500"], "model.space.units.min", "<= max"),
    (["trainer.optimizer=adamm"], "trainer.optimizer", "'adam'"),
    (["tuner.objective=val_acc"], "tuner.objective", "val_accuracy"),
    (["+model.hidden=3"], "model.hidden", "space"),
    (["data.val_fraction=0.7", "data.test_fraction=0.5"], "data.val_fraction", "< 1"),
    (["tracking.log_models=false"], "tracking.log_models", "ensemble=none"),
    # A worker still waiting for an answer after its lease would act on a trial handed to another.
    (
        ["tuner.oracle.lease_s=5", "tuner.oracle.wait_s=5"],
        "tuner.oracle.wait_s",
        "fewer seconds than tuner.oracle.lease_s (5)",
    ),
    (["tuner.oracle.tls_cert=/etc/hostname"], "tuner.oracle.tls_key", "set together"),
    (["tuner.oracle.tls_key=/etc/hostname"], "tuner.oracle.tls_cert", "set together"),
    (
        ["tuner.oracle.tls_cert=/no/such/cert.pem", "tuner.oracle.tls_key=/etc/hostname"],
        "tuner.oracle.tls_cert",
        "a PEM certificate file this user can read (No such file or directory)",
    ),
    (
        ["tuner.oracle.tls_cert=/etc/hostname", "tuner.oracle.tls_key=/etc/hostname"],
        "tuner.oracle.tls_cert",
        "a PEM certificate file (-----BEGIN CERTIFICATE-----)",
    ),
]


@pytest.mark.parametrize("overrides, key, expected", BAD_INPUTS, ids=[o[0] for o, _, _ in BAD_INPUTS])
def test_bad_input_names_the_key_and_creates_no_run(make_config, no_store, overrides, key, expected):
    cfg = make_config([*no_store["overrides"], *overrides])
    with pytest.raises(ConfigError) as info:
        run(cfg)
    message = str(info.value)
    assert info.value.key == key
    assert expected in message
    # Nothing was recorded: no store, no tuner state.
    assert not (Path.cwd() / "mlruns").exists()
    assert not (Path.cwd() / "state").exists()


@pytest.mark.parametrize("encrypted", [False, True], ids=["another certificate's key", "an encrypted key"])
def test_a_tls_key_that_is_not_the_certificates_names_the_key_and_creates_no_run(
    make_config, no_store, tmp_path, encrypted
):
    """gRPC would only fail to listen, which read as a busy port."""
    from certs import self_signed
    from cryptography.hazmat.primitives import serialization

    cert, _key = self_signed(tmp_path, "127.0.0.1")
    _other, key = self_signed(tmp_path, "127.0.0.1", name="other")
    if encrypted:
        own = serialization.load_pem_private_key(_key.read_bytes(), None)
        key.write_bytes(
            own.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
    cfg = make_config(
        [*no_store["overrides"], "tuner.workers=0", f"tuner.oracle.tls_cert={cert}", f"tuner.oracle.tls_key={key}"]
    )
    with pytest.raises(ConfigError) as info:
        run(cfg)
    assert info.value.key == "tuner.oracle.tls_key"
    expected = "an unencrypted PEM private key" if encrypted else "the private key"
    assert f"expected {expected} of the certificate in tuner.oracle.tls_cert ({cert})" in str(info.value)
    assert not (Path.cwd() / "mlruns").exists()
    assert not (Path.cwd() / "state").exists()


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeplab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_a_bad_value_without_a_traceback(tmp_path):
    result = _cli("model.space.activation.values=[relu,relux]", "hydra.run.dir=.", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.space.activation" in result.stderr and "'relux'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()
    # Validation runs before TensorFlow is imported: no TF log lines.
    assert "tensorflow" not in result.stderr.lower()


def test_cli_reports_an_unknown_group_option(tmp_path):
    result = _cli("model=mlpp", cwd=tmp_path)
    assert result.returncode != 0
    assert "model/mlpp" in result.stderr and "mlp" in result.stderr
    assert not (tmp_path / "mlruns").exists()


def test_help_names_the_app_and_shows_groups_and_examples(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("sweeplab:") and "__main__" not in result.stdout
    assert "model: inception, mlp, mlp_variant, multi_output, residual" in result.stdout
    assert "sweeplab ensemble --experiment NAME" in result.stdout
    assert "sweeplab report --experiment NAME" in result.stdout


def test_sweeplab_command_lists_its_subcommands_and_runs_them(tmp_path):
    sweeplab = Path(sys.executable).with_name("sweeplab")
    listed = subprocess.run([str(sweeplab), "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for command in ("search", "ensemble", "report"):
        assert f"  {command} " in listed.stdout
    # Each subcommand is its `python -m` command: same help, same errors.
    search = subprocess.run([str(sweeplab), "search", "--help"], capture_output=True, text=True, timeout=60)
    assert search.stdout == _cli("--help", cwd=tmp_path).stdout
    report = subprocess.run([str(sweeplab), "report", "--help"], capture_output=True, text=True, timeout=60)
    assert "--experiment" in report.stdout and "--no-log" in report.stdout
    bad = subprocess.run([str(sweeplab), "serch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command 'serch'" in bad.stderr


if __name__ == "__main__":
    # Rewrites the snapshot; only after a deliberate change to what an option composes into.
    from conftest import compose_config

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    snapshot = {key: composed(compose_config, [] if key == "config" else key.split()) for key in SNAPSHOT_KEYS}
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"{SNAPSHOT}: {len(snapshot)} composed configs")
