"""`make bench` writes each benchmark's figures into its own section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_common():
    """bench/common.py, the benchmarks' shared module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_second_run_replaces_its_own_section_and_keeps_the_rest(bench_common, tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nHow to read this page (written by hand).\n")
    bench_common.write_section(page, "overhead", "## overhead\n\nfirst run: 0.37")
    bench_common.write_section(page, "scale", "## scale\n\nscale run: 1.22")
    bench_common.write_section(page, "overhead", "## overhead\n\nsecond run: 0.30")

    text = page.read_text()
    assert "How to read this page (written by hand)." in text
    assert "second run: 0.30" in text and "first run" not in text
    assert "scale run: 1.22" in text
    assert text.count("<!-- bench:overhead -->") == 1 and text.count("<!-- /bench:overhead -->") == 1
    # The replaced section stays where it was, before the scale section.
    assert text.index("second run") < text.index("scale run")


def test_a_missing_page_is_created_with_the_section(bench_common, tmp_path):
    page = tmp_path / "docs" / "benchmarks.md"
    bench_common.write_section(page, "memory", "## memory\n\nratio 1.055")
    text = page.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "<!-- bench:memory -->\n## memory\n\nratio 1.055\n<!-- /bench:memory -->" in text


def test_a_section_names_its_date_machine_versions_and_table(bench_common, tmp_path, capsys):
    page = tmp_path / "benchmarks.md"
    args = argparse.Namespace(report=page)
    bench_common.publish(
        args, "scale", "scale", "20 trials", ["arm", "trials/min"], [["1-worker", 24.25]], "ratios: 1.22"
    )
    text = page.read_text()
    assert re.search(r"- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert re.search(r"- machine: .+, \d+ cores, [\d.]+ GiB RAM", text)
    assert "Python " in text and "keras " in text
    assert "| arm | trials/min |\n| --- | --- |\n| 1-worker | 24.2 |" in text
    assert "ratios: 1.22" in capsys.readouterr().out


def test_without_report_nothing_is_written(bench_common, tmp_path, capsys):
    bench_common.publish(argparse.Namespace(report=None), "scale", "scale", "d", ["arm"], [["a"]], "ratios: n/a")
    assert list(tmp_path.iterdir()) == []
    assert "ratios: n/a" in capsys.readouterr().out
