"""Benchmark of batch scoring (`churnwise.api.score`): throughput and peak memory, with and without reasons.

A LightGBM model is trained once (default config) on the 20,000-customer demo and registered in the work
directory's MLflow store. For each demo size (default 20,000 and 1,000,000 customers: 36 months from
2022-01-01, seed 42, generated once per size by `features_bench.demo_tables` and reused) the scoring stage
runs as `make score` runs it (validation, features as of the end of the data, model, CLV, ladder, reasons,
actions, ranking, budget, Parquet + CSV + DuckDB history, MLflow run), twice:

- with reasons (`reasons.enabled=true`, the default: per-customer TreeSHAP contributions);
- without reasons (`reasons.enabled=false`).

Each run is its own subprocess, so its peak resident memory (`ru_maxrss`) is its own. Reported per run:
customers scored, wall seconds per phase (validate, features, score_and_decide, rank_and_select, write,
track), throughput = customers / score_and_decide seconds (the model, reasons and decisions) and customers /
total seconds (end to end), peak RSS, and the 1-minute load average before and after (a value well above the
2 cores means other work disturbed the timings). Results go to `bench/results/score_<size>.json`.

    python bench/score_bench.py                                 # 20,000 and 1,000,000 customers
    python bench/score_bench.py --sizes 20000 --chunk-rows 50000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features_bench import demo_tables, machine  # bench/ is the script's folder
from rss import MIB, RssSampler, peak_rss_bytes

logger = logging.getLogger("bench.score_bench")

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_WORK_DIR = Path("/tmp/churnwise-score-bench")
TRAIN_SIZE = 20_000


def _config(work_dir: Path, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"paths.root_dir={work_dir}", "data.generate_if_missing=false", *overrides],
        )


def train_model(work_dir: Path, tables_dir: Path) -> dict[str, Any]:
    """Train and register the model scored with (in this process)."""
    from churnwise.api import train

    cfg = _config(
        work_dir,
        [
            f"data.path={tables_dir}",
            "data.name=bench_train",
            "data.truth_path=null",
            "evaluation.baseline=null",
        ],
    )
    result = train(cfg)
    return {"model_uri": result.model_uri, "test_roc_auc": result.metrics["test_roc_auc"]}


def measure(
    work_dir: Path, tables_dir: Path, model_uri: str, reasons: bool, chunk_rows: int, tag: str
) -> dict[str, Any]:
    """One scoring run in this process: wall time per phase, throughput and peak memory."""
    from churnwise.api import score

    cfg = _config(
        work_dir,
        [
            f"data.path={tables_dir}",
            f"data.name=bench_{tag}",
            f"score.model_uri={model_uri}",
            f"reasons.enabled={str(reasons).lower()}",
            f"score.chunk_rows={chunk_rows}",
            f"score.output_dir={work_dir / 'outputs' / 'scores' / tag}",
            f"score.database={work_dir / 'outputs' / 'scores' / tag / 'history.duckdb'}",
        ],
    )
    sampler = RssSampler()
    sampler.start()
    began = time.perf_counter()
    try:
        result = score(cfg)
    finally:
        sampler.stop()
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scoring = result.seconds["score_and_decide"]
    return {
        "customers": result.customers,
        "seconds": round(seconds, 2),
        "phase_seconds": result.seconds,
        "customers_per_second_scoring": round(result.customers / scoring, 1),
        "customers_per_second_end_to_end": round(result.customers / seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(peak_rss_bytes() / MIB, 1),
        "peak_sampled_rss_mib": round(sampler.peak_bytes / MIB, 1),
        "selected": result.summary.selected,
        "output_mib": round(result.path.stat().st_size / MIB, 1),
    }


def _child(args: list[str], work_dir: Path, timeout: float | None) -> subprocess.CompletedProcess[str]:
    """Run this script in a fresh Python process (work dir as cwd, so DuckDB spills there)."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True, text=True, timeout=timeout, cwd=work_dir, check=False,
    )  # fmt: skip


def run_child(command: str, work_dir: Path, timeout: float, **options: Any) -> dict[str, Any]:
    """A `_train` or `_measure` subprocess; its JSON result, or the failure."""
    result_path = work_dir / f"result_{command}_{options.get('tag', 'train')}.json"
    result_path.unlink(missing_ok=True)
    args = [command, "--work-dir", str(work_dir), "--result", str(result_path)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    load_before = round(os.getloadavg()[0], 2)
    try:
        done = _child(args, work_dir, timeout)
    except subprocess.TimeoutExpired:
        return {"status": "did_not_finish", "timeout_seconds": timeout}
    if done.returncode != 0 or not result_path.exists():
        logger.warning("%s failed (exit %s): %s", command, done.returncode, done.stderr[-3000:])
        return {"status": "failed", "exit_code": done.returncode, "stderr_tail": done.stderr[-3000:]}
    measured = json.loads(result_path.read_text())
    result_path.unlink()
    return {
        "status": "ok",
        "load_average_before": load_before,
        "load_average_after": round(os.getloadavg()[0], 2),
        **measured,
    }


def benchmark(
    sizes: list[int], work_dir: Path, results_dir: Path, chunk_rows: int, timeout: float
) -> list[dict[str, Any]]:
    """Train once, then score every size with and without reasons; write one result file per size."""
    train_tables, _ = demo_tables(TRAIN_SIZE, work_dir)
    logger.info("training the model to score with on %s customers", f"{TRAIN_SIZE:,}")
    trained = run_child("_train", work_dir, timeout, tables_dir=train_tables)
    if trained["status"] != "ok":
        raise RuntimeError(f"training failed: {trained}")
    results = []
    for n_customers in sizes:
        tables_dir, table_rows = demo_tables(n_customers, work_dir)
        runs = {}
        for reasons in (True, False):
            tag = f"{n_customers}_{'reasons' if reasons else 'no_reasons'}"
            logger.info(
                "scoring %s customers %s reasons", f"{n_customers:,}", "with" if reasons else "without"
            )
            runs["with_reasons" if reasons else "without_reasons"] = {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                **run_child(
                    "_measure",
                    work_dir,
                    timeout,
                    tables_dir=tables_dir,
                    model_uri=trained["model_uri"],
                    reasons=str(reasons).lower(),
                    chunk_rows=chunk_rows,
                    tag=tag,
                ),  # fmt: skip
            }
        result = {
            "benchmark": "score_bench",
            "n_customers": n_customers,
            "table_rows": table_rows,
            "model": {"trained_on_customers": TRAIN_SIZE, **trained},
            "chunk_rows": chunk_rows,
            "runs": runs,
            "ratios": ratios(runs),
            "machine": machine(),
        }
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"score_{n_customers}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        logger.info("result written to %s", path)
        results.append(result)
    return results


def ratios(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """What reasons cost: with / without, for scoring time, end-to-end time and peak memory."""
    with_, without = runs["with_reasons"], runs["without_reasons"]
    if with_.get("status") != "ok" or without.get("status") != "ok":
        return {}
    return {
        "score_and_decide_seconds": round(
            with_["phase_seconds"]["score_and_decide"] / without["phase_seconds"]["score_and_decide"], 2
        ),
        "end_to_end_seconds": round(with_["seconds"] / without["seconds"], 2),
        "peak_rss": round(with_["peak_rss_mib"] / without["peak_rss_mib"], 2),
    }


def format_report(result: dict[str, Any]) -> str:
    """A short table of one size's runs."""
    lines = [
        f"batch scoring: {result['n_customers']:,} customers in the data (chunks of {result['chunk_rows']:,})",
        f"  {'run':<17}{'scored':>10}{'scoring c/s':>13}{'end-to-end c/s':>16}{'total s':>9}{'peak RSS MiB':>14}",
    ]
    for name, run in result["runs"].items():
        if run["status"] != "ok":
            lines.append(f"  {name:<17}  {run['status']}")
            continue
        lines.append(
            f"  {name:<17}{run['customers']:>10,}{run['customers_per_second_scoring']:>13,.0f}"
            f"{run['customers_per_second_end_to_end']:>16,.0f}{run['seconds']:>9,.1f}{run['peak_rss_mib']:>14,.0f}"
        )
        lines.append(f"    phases: {', '.join(f'{k} {v:.1f} s' for k, v in run['phase_seconds'].items())}")
    if result["ratios"]:
        r = result["ratios"]
        lines.append(
            f"  with/without reasons: scoring time x{r['score_and_decide_seconds']:.2f}, "
            f"end to end x{r['end_to_end_seconds']:.2f}, peak RSS x{r['peak_rss']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: the benchmark, or one of its subprocesses (`_train`, `_measure`)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in ("_train", "_measure"):
        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        for option in ("--work-dir", "--result", "--tables-dir"):
            parser.add_argument(option, type=Path)
        parser.add_argument("--model-uri")
        parser.add_argument("--reasons", choices=["true", "false"])
        parser.add_argument("--chunk-rows", type=int)
        parser.add_argument("--tag")
        args = parser.parse_args(argv)
        if args.command == "_train":
            result = train_model(args.work_dir, args.tables_dir)
        else:
            result = measure(
                args.work_dir,
                args.tables_dir,
                args.model_uri,
                args.reasons == "true",
                args.chunk_rows,
                args.tag,
            )
        args.result.write_text(json.dumps(result, indent=2))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[20_000, 1_000_000], help="customers per demo"
    )
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="score.chunk_rows (default 50,000)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess (default 3600)")
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="demo data, MLflow store, outputs"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where to write the JSON results"
    )
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    for result in benchmark(
        args.sizes, args.work_dir.resolve(), args.results_dir, args.chunk_rows, args.timeout
    ):
        print(format_report(result), flush=True)


if __name__ == "__main__":
    main()
