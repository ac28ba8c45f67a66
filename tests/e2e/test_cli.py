"""The `churnwise` command ([project.scripts]) runs the same stages as `make <stage>`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHURNWISE = Path(sys.executable).parent / "churnwise"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHURNWISE), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_command_lists_its_stages_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    listed = run("--help", cwd=tmp_path)
    assert listed.returncode == 0
    assert all(stage in listed.stdout for stage in ("train", "score", "report", "validate", "data"))
    unknown = run("deploy", cwd=tmp_path)
    assert unknown.returncode == 2 and "stages:" in unknown.stdout


@pytest.mark.slow
def test_a_stage_runs_from_any_folder_and_a_bad_setting_exits_2_naming_its_key(tmp_path: Path) -> None:
    root = tmp_path / "project"
    done = run("validate", "debug=default", f"paths.root_dir={root}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "input data meets the data contract" in done.stdout + done.stderr
    assert (root / "data" / "demo_debug" / "customers.parquet").is_file()  # made, as make validate does

    refused = run("score", "debug=default", f"paths.root_dir={root}", "actions.budget=-5", cwd=tmp_path)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2
    assert "actions.budget: -5 is not a number at least 0" in output
    assert "Traceback" not in output
