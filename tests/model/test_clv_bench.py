"""The lifetime-value bench (bench/clv.py) runs end to end on a small retail demo: every method predicts every
customer, the truth's expected spend is the most accurate, and the page renders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PATH = Path(__file__).resolve().parents[2] / "bench" / "clv.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("churnwise_bench_clv", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_clv_bench_compares_every_method_on_the_same_customers() -> None:
    bench = load_bench()  # it works in a temporary root: nothing is written under the project
    result = bench.run(2000, 36, 3, 0.001, [], {"project": []}, paths=16)
    metrics = result["metrics"]
    assert set(metrics) == {"truth (ceiling)", "BG/NBD + Gamma-Gamma", "last 12 months repeat", "project"}
    assert result["buyers"] > 500 and result["realised_total"] > 0
    # the hidden truth's expected spend is the best prediction there is: lowest error, close to unbiased
    assert metrics["truth (ceiling)"]["mae"] == min(m["mae"] for m in metrics.values())
    assert abs(metrics["truth (ceiling)"]["total_bias_pct"]) < 10
    for m in metrics.values():
        assert 0 <= m["top_decile_capture"] <= 1 and -1 <= m["spearman"] <= 1
    assert metrics["project"]["spearman"] > 0.3  # the project ranks spend, whatever its level
    page = bench.markdown(result)
    assert page.startswith("# Lifetime value") and "| project |" in page
