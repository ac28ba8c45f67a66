"""End-to-end: every notebook in notebooks/ runs top to bottom on small demo data, against a model trained here.

Each notebook is read from its jupytext percent script and executed in memory with nbclient (the kernel is
this interpreter's `python3`), from the notebooks folder as a user would open it. `CHURNWISE_HOME` points the
notebook's config at a temporary project root and `CHURNWISE_OVERRIDES` shrinks it as the training below was
shrunk. The scripts are never written: they stay output-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra
from nbclient import NotebookClient

from churnwise.api import train
from features.contract import CONTRACT
from models.training import TrainResult

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.py"))
OVERRIDES = ("debug=default", "evaluation.baseline=null")  # the notebooks get the same as the training
CELL_TIMEOUT = 300  # seconds per cell; the whole run on the debug data takes well under a minute


@dataclass(frozen=True)
class Trained:
    """The temporary project root and what training there produced."""

    root: Path
    result: TrainResult


@dataclass(frozen=True)
class Expectation:
    """What a notebook must produce: figures, and values read back from its kernel after the last cell."""

    figures: int
    probe: str  # a Python expression over the notebook's variables, evaluated to a JSON-able dict
    check: Callable[[dict[str, Any], Trained], None]


def check_exploration(found: dict[str, Any], trained: Trained) -> None:
    # the demo data has every table of the contract but the event-type lookup (its events are named already)
    assert found["tables"] == len(CONTRACT.tables) - 1
    assert found["labelled_dates"] >= 6 and all(0 < rate < 0.5 for rate in found["churn_rates"])
    assert found["snapshots"] > 1000
    assert abs(found["top_auc"] - 0.5) > 0.05, found  # some feature on its own separates churners


def check_experiment_review(found: dict[str, Any], trained: Trained) -> None:
    assert found["runs"] >= 1 and found["min_test_roc_auc"] > 0.5
    assert found["chosen_run"] == trained.result.run_id  # the champion, which the training here registered
    # The reliability table recomputed from the registered model on the latest labelled dates is the test
    # slice of the run: its ECE is the logged one.
    assert found["ece_recomputed"] == pytest.approx(found["ece_logged"], abs=1e-6)
    assert found["reasons_shown"] >= 3 and found["additivity_error"] < 1e-6


EXPECTATIONS = {
    "01_exploration.py": Expectation(
        figures=3,
        probe="{'tables': len(tables.report.tables), "
        "'labelled_dates': int(churn_by_date['churn_rate'].notna().sum()), "
        "'churn_rates': churn_by_date['churn_rate'].dropna().tolist(), 'snapshots': len(snapshots), "
        "'top_auc': float(univariate['roc_auc'].iloc[0])}",
        check=check_exploration,
    ),
    "02_experiment_review.py": Expectation(
        figures=3,
        probe="{'runs': len(comparison), 'min_test_roc_auc': float(comparison['test_roc_auc'].min()), "
        "'chosen_run': chosen_run_id, 'ece_logged': float(chosen['test_ece']), "
        "'ece_recomputed': float(ece_recomputed), 'reasons_shown': len(reason_counts), "
        "'additivity_error': float(additivity_error)}",
        check=check_experiment_review,
    ),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("notebooks")
    result = train(compose_config(root, *OVERRIDES, debug=False))
    yield Trained(root, result)
    GlobalHydra.instance().clear()


def execute(path: Path, root: Path, probe: str | None) -> nbformat.NotebookNode:
    """Run the notebook in memory (plus a last cell printing the probe as JSON) and return it with outputs."""
    notebook = jupytext.read(path)
    if probe is not None:
        notebook.cells.append(
            nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}, default=str))")
        )
    env = {**os.environ, "CHURNWISE_HOME": str(root), "CHURNWISE_OVERRIDES": " ".join(OVERRIDES)}
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    return notebook


def test_notebooks_are_found() -> None:
    assert {p.name for p in NOTEBOOKS} >= set(EXPECTATIONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_demo_data(path: Path, trained: Trained) -> None:
    script = path.read_bytes()
    header = jupytext.read(path).metadata["jupytext"]["text_representation"]
    assert header["format_name"] == "percent", "keep notebooks as jupytext percent scripts"

    expected = EXPECTATIONS.get(path.name)
    notebook = execute(path, trained.root, expected.probe if expected else None)

    assert path.read_bytes() == script, "executing must not write into the committed script"
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    if expected is None:
        assert outputs, f"{path.name} ran but showed nothing"
        return
    assert len(figures) >= expected.figures, f"{path.name} showed {len(figures)} figure(s)"
    printed = "".join(o.text for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
    expected.check(json.loads(printed), trained)
