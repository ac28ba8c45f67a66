"""Benchmark of the feature table build: DuckDB engine versus a plain pandas implementation.

For each demo size it builds the point-in-time feature table with the contractual label for 1 observation
date (2024-06-01) and for 24 monthly dates (2022-07-01 .. 2024-06-01), with

- duckdb: what the features stage does: a connection set up from conf/engine/duckdb.yaml, `load_tables`
  (validation), `plan_build`, `write_feature_table` (dates computed `dates_per_batch` at a time, one Parquet);
- duckdb_unbatched (optional): `load_tables` + `build_feature_table` (all dates in one query) + COPY to Parquet;
- pandas: `bench/pandas_features.py` (read Parquet, compute per date in pandas) + write to Parquet;

each measurement in its own subprocess, so its peak resident memory (`ru_maxrss`) is its own, and stopped
after `--timeout` seconds ("did not finish"). Demo data (36 months from 2022-01-01, seed 42) is generated
once per size into the work directory and reused. Results go to `bench/results/features_<size>.json`.

    python bench/features_bench.py                          # 20,000 and 1,000,000 customers, duckdb and pandas
    python bench/features_bench.py --sizes 20000 --engines duckdb pandas --timeout 1800
    python bench/features_bench.py --sizes 1000000 --engines duckdb_unbatched
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rss import MIB, RssSampler, current_rss_bytes, peak_rss_bytes  # bench/ is the script's folder

logger = logging.getLogger("bench.features_bench")


BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_WORK_DIR = Path("/tmp/churnwise-features-bench")


DEMO_START = "2022-01-01"
DEMO_MONTHS = 36
DEMO_SEED = 42
DEMO_CHUNK_SIZE = 50_000
DATA_END = date(2025, 1, 1)  # first day after the demo's 36 months
MONTHLY_DATES = [
    date(2022 + (6 + i) // 12, (6 + i) % 12 + 1, 1) for i in range(24)
]  # 2022-07-01 .. 2024-06-01
DATE_SETS = {1: [date(2024, 6, 1)], 24: MONTHLY_DATES}
ENGINES = ("duckdb", "duckdb_unbatched", "pandas")
DEFAULT_ENGINES = ("duckdb", "pandas")


# -- the measured work, run inside a child process -----------------------------------------------------


def _load_pandas_reference() -> Any:
    """`bench/pandas_features.py`, loaded by file path (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "churnwise_bench_pandas_features", BENCH_DIR / "pandas_features.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _config(group: str, name: str, resolve: bool = True) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(
        OmegaConf.load(PROJECT_ROOT / "conf" / group / f"{name}.yaml"), resolve=resolve
    )


def _duckdb_connection(work_dir: Path) -> Any:
    """A connection made as the stage makes it (conf/engine/duckdb.yaml), spilling into the work dir."""
    from omegaconf import OmegaConf

    from features.inputs import EngineSettings, connect

    engine_cfg = _config("engine", "duckdb", resolve=False) | {"temp_directory": str(work_dir / "duckdb_tmp")}
    return connect(EngineSettings.from_config(OmegaConf.create(engine_cfg)))


def build_with_duckdb(tables_dir: Path, dates: list[date], output: Path, work_dir: Path) -> dict[str, Any]:
    """The features stage's work: validate and load the tables, compute the dates in batches, write Parquet."""
    from features.engine import plan_build, write_feature_table
    from features.validation import load_tables

    features_cfg = _config("features", "default")
    observation_cfg = _config("observation", "monthly") | {"data_end": DATA_END.isoformat()}
    label_cfg = _config("label", "contractual")
    dates_per_batch = int(_config("engine", "duckdb", resolve=False)["dates_per_batch"])
    began = time.perf_counter()
    tables = load_tables(tables_dir, con=_duckdb_connection(work_dir))
    loaded = time.perf_counter()
    present = set(tables.report.present)
    planned = plan_build(tables.con, present, features_cfg, observation_cfg, label_cfg, dates=dates)
    build = write_feature_table(tables.con, planned, present, output, dates_per_batch=dates_per_batch)
    written = time.perf_counter()
    tables.con.close()
    return {
        "rows": build.rows,
        "columns": 2 + len(build.plan.features) + 2,
        "dates_per_batch": dates_per_batch,
        "phase_seconds": {
            "load_and_validate": round(loaded - began, 2),
            "build_and_write_parquet": round(written - loaded, 2),
        },
        "seconds": written - began,
    }


def build_with_duckdb_unbatched(
    tables_dir: Path, dates: list[date], output: Path, work_dir: Path
) -> dict[str, Any]:
    """All dates in one query: load the tables, `build_feature_table` into a temp table, COPY it to Parquet."""
    from features.engine import build_feature_table
    from features.sql import literal
    from features.validation import load_tables

    features_cfg = _config("features", "default")
    observation_cfg = _config("observation", "monthly") | {"data_end": DATA_END.isoformat()}
    label_cfg = _config("label", "contractual")
    began = time.perf_counter()
    tables = load_tables(tables_dir, con=_duckdb_connection(work_dir))
    loaded = time.perf_counter()
    build = build_feature_table(
        tables.con, set(tables.report.present), features_cfg, observation_cfg, label_cfg, dates=dates
    )
    built = time.perf_counter()
    tables.con.execute(f"COPY feature_table TO {literal(output)} (FORMAT parquet, COMPRESSION zstd)")
    written = time.perf_counter()
    columns = len(tables.con.execute("DESCRIBE feature_table").fetchall())
    tables.con.close()
    return {
        "rows": build.rows,
        "columns": columns,
        "phase_seconds": {
            "load_and_validate": round(loaded - began, 2),
            "build": round(built - loaded, 2),
            "write_parquet": round(written - built, 2),
        },
        "seconds": written - began,
    }


def build_with_pandas(
    tables_dir: Path, dates: list[date], output: Path, event_types: list[str]
) -> dict[str, Any]:
    """The pandas reference: read the tables, build features and labels per date, write Parquet."""
    reference = _load_pandas_reference()
    label_cfg = _config("label", "contractual")
    windows = tuple(_config("features", "default")["windows_days"])
    began = time.perf_counter()
    table = reference.build_features_pandas(
        tables_dir,
        dates,
        event_types,
        windows=windows,
        horizon_days=int(label_cfg["horizon_days"]),
        lead_days=int(label_cfg["lead_days"]),
        grace_days=int(label_cfg["grace_days"]),
        data_end=DATA_END,
    )
    built = time.perf_counter()
    table.to_parquet(output, compression="zstd", index=False)
    written = time.perf_counter()
    return {
        "rows": len(table),
        "columns": table.shape[1],
        "phase_seconds": {
            "read_and_build": round(built - began, 2),
            "write_parquet": round(written - built, 2),
        },
        "seconds": written - began,
    }


def measure(
    engine: str, tables_dir: Path, n_dates: int, output: Path, event_types: list[str], work_dir: Path
) -> dict[str, Any]:
    """Run one engine on one date set in this process and measure time and peak memory."""
    rss_before = current_rss_bytes()
    sampler = RssSampler()
    sampler.start()
    try:
        if engine == "duckdb":
            result = build_with_duckdb(tables_dir, DATE_SETS[n_dates], output, work_dir)
        elif engine == "duckdb_unbatched":
            result = build_with_duckdb_unbatched(tables_dir, DATE_SETS[n_dates], output, work_dir)
        elif engine == "pandas":
            result = build_with_pandas(tables_dir, DATE_SETS[n_dates], output, event_types)
        else:
            raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    finally:
        sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    output_bytes = output.stat().st_size
    output.unlink()
    return {
        **result,
        "seconds": round(result["seconds"], 2),
        # CPU time of the whole process (all threads, imports included): less sensitive to other load than wall time.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(peak_rss_bytes() / MIB, 1),
        "peak_sampled_rss_mib": round(sampler.peak_bytes / MIB, 1),
        "rss_before_mib": round(rss_before / MIB, 1),
        "output_mib": round(output_bytes / MIB, 1),
    }


# -- orchestration, in the parent process ----------------------------------------------------------------


def _child(args: list[str], timeout: float | None) -> subprocess.CompletedProcess[str]:
    """Run this script in a fresh Python process (work dir as cwd, so DuckDB spills there)."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=args[args.index("--work-dir") + 1],
        check=False,
    )


def demo_tables(n_customers: int, work_dir: Path) -> tuple[Path, dict[str, int]]:
    """The demo tables for `n_customers` in the work dir, generated (in a subprocess) unless already there."""
    tables_dir = work_dir / f"demo_{n_customers}" / "tables"
    manifest_path = tables_dir / "_manifest.json"
    wanted = {"n_customers": n_customers, "start_date": DEMO_START, "months": DEMO_MONTHS, "seed": DEMO_SEED}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if all(manifest["spec"].get(key) == value for key, value in wanted.items()):
            logger.info("reusing demo data for %s customers in %s", f"{n_customers:,}", tables_dir)
            return tables_dir, manifest["rows"]
    logger.info("generating demo data for %s customers into %s", f"{n_customers:,}", tables_dir)
    done = _child(["_generate", "--size", str(n_customers), "--work-dir", str(work_dir)], None)
    if done.returncode != 0:
        raise RuntimeError(f"demo generation failed:\n{done.stderr[-4000:]}")
    return tables_dir, json.loads(manifest_path.read_text())["rows"]


def run_measurement(
    engine: str, n_customers: int, n_dates: int, tables_dir: Path, work_dir: Path, timeout: float
) -> dict[str, Any]:
    """One (engine, size, dates) measurement in its own subprocess; 'did_not_finish' after `timeout` s."""
    from features.demo.dated import (
        EVENT_TYPES,  # the pandas build needs them listed; the engine finds them itself
    )

    result_path = work_dir / f"result_{engine}_{n_customers}_{n_dates}.json"
    result_path.unlink(missing_ok=True)
    output = work_dir / f"features_{engine}_{n_customers}_{n_dates}.parquet"
    args = [
        "_measure", "--engine", engine, "--tables-dir", str(tables_dir), "--dates", str(n_dates),
        "--output", str(output), "--result", str(result_path), "--work-dir", str(work_dir),
        "--event-types", *EVENT_TYPES,
    ]  # fmt: skip
    base = {
        "engine": engine,
        "n_dates": n_dates,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine skews the timings: a 1-minute load average above the cores used shows it.
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    logger.info(
        "measuring %s, %s customers, %d date(s) (timeout %g s)",
        engine,
        f"{n_customers:,}",
        n_dates,
        timeout,
    )
    began = time.perf_counter()
    try:
        done = _child(args, timeout)
    except subprocess.TimeoutExpired:
        output.unlink(missing_ok=True)
        logger.warning("%s did not finish within %g s", engine, timeout)
        return {**base, "status": "did_not_finish", "timeout_seconds": timeout}
    wall = round(time.perf_counter() - began, 2)
    if done.returncode != 0 or not result_path.exists():
        output.unlink(missing_ok=True)
        logger.warning("%s failed (exit %s): %s", engine, done.returncode, done.stderr[-2000:])
        return {**base, "status": "failed", "exit_code": done.returncode, "stderr_tail": done.stderr[-2000:]}
    measured = json.loads(result_path.read_text())
    result_path.unlink()
    load_after = round(os.getloadavg()[0], 2)
    return {**base, "load_average_after": load_after, "status": "ok", "process_seconds": wall, **measured}


def ratios(measurements: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """pandas / duckdb ratios of seconds and peak RSS, per date set, where both finished."""
    found = {(m["engine"], m["n_dates"]): m for m in measurements if m.get("status") == "ok"}
    out: dict[str, dict[str, float | None]] = {}
    for n_dates in DATE_SETS:
        duck, pand = found.get(("duckdb", n_dates)), found.get(("pandas", n_dates))
        if duck and pand:
            out[f"{n_dates}_dates"] = {
                "seconds": round(pand["seconds"] / duck["seconds"], 2),
                "peak_rss": round(pand["peak_rss_mib"] / duck["peak_rss_mib"], 2),
            }
    return out


def machine() -> dict[str, Any]:
    """Versions and hardware the figures were measured on."""
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    return {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "platform": platform.platform(),
    }


def benchmark_size(
    n_customers: int, engines: Sequence[str], timeout: float, work_dir: Path, results_dir: Path
) -> dict[str, Any]:
    """All measurements for one size; merged into `features_<size>.json` with earlier engines' results."""
    tables_dir, table_rows = demo_tables(n_customers, work_dir)
    measurements = [
        run_measurement(engine, n_customers, n_dates, tables_dir, work_dir, timeout)
        for n_dates in DATE_SETS
        for engine in engines
    ]
    result_path = results_dir / f"features_{n_customers}.json"
    if result_path.exists():  # keep the other engines' measurements of an earlier run on the same data
        earlier = json.loads(result_path.read_text())
        if earlier.get("table_rows") == table_rows:
            done = {(m["engine"], m["n_dates"]) for m in measurements}
            measurements = [
                m for m in earlier["measurements"] if (m["engine"], m["n_dates"]) not in done
            ] + measurements
    measurements.sort(key=lambda m: (m["n_dates"], ENGINES.index(m["engine"])))
    result = {
        "benchmark": "features_bench",
        "n_customers": n_customers,
        "demo": {
            "start_date": DEMO_START,
            "months": DEMO_MONTHS,
            "seed": DEMO_SEED,
            "chunk_size": DEMO_CHUNK_SIZE,
        },
        "data_end": DATA_END.isoformat(),
        "date_sets": {
            str(n): [d.isoformat() for d in (dates[0], dates[-1])] for n, dates in DATE_SETS.items()
        },
        "table_rows": table_rows,
        "timeout_seconds": timeout,
        "measurements": measurements,
        "pandas_over_duckdb": ratios(measurements),
        "machine": machine(),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("result written to %s", result_path)
    return result


def format_report(result: dict[str, Any]) -> str:
    """A short table of one size's measurements and the pandas/duckdb ratios."""
    lines = [
        f"feature table build: {result['n_customers']:,} customers "
        f"({result['table_rows']['events']:,} events, {result['table_rows']['subscriptions']:,} subscriptions)",
        f"  {'engine':<18}{'dates':>6}{'seconds':>11}{'peak RSS MiB':>15}{'rows':>14}",
    ]
    for m in result["measurements"]:
        if m["status"] == "ok":
            lines.append(
                f"  {m['engine']:<18}{m['n_dates']:>6}{m['seconds']:>11,.1f}{m['peak_rss_mib']:>15,.0f}{m['rows']:>14,}"
            )
        else:
            status = "did not finish" if m["status"] == "did_not_finish" else "failed"
            lines.append(f"  {m['engine']:<18}{m['n_dates']:>6}  {status}")
    for key, ratio in result["pandas_over_duckdb"].items():
        lines.append(
            f"  pandas/duckdb, {key.replace('_', ' ')}: time x{ratio['seconds']:.2f}, peak RSS x{ratio['peak_rss']:.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[20_000, 1_000_000], help="customers per demo"
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=list(DEFAULT_ENGINES),
        help="duckdb (as the features stage: dates in batches), duckdb_unbatched (all dates in one query), "
        "pandas (default: duckdb pandas)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per measurement (default 1800)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"demo data and scratch (default {DEFAULT_WORK_DIR})",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where to write the JSON results"
    )
    return parser.parse_args(argv)


def _child_main(argv: list[str]) -> None:
    """Entry of the subprocesses: `_generate` demo data or `_measure` one engine."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["_generate", "_measure"])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--size", type=int)
    parser.add_argument("--engine", choices=ENGINES)
    parser.add_argument("--tables-dir", type=Path)
    parser.add_argument("--dates", type=int, choices=sorted(DATE_SETS))
    parser.add_argument("--output", type=Path)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--event-types", nargs="+", default=[])
    args = parser.parse_args(argv)
    if args.command == "_generate":
        from features.demo.dated import DemoSpec, generate_demo

        spec = DemoSpec(
            n_customers=args.size,
            start_date=DEMO_START,
            months=DEMO_MONTHS,
            seed=DEMO_SEED,
            chunk_size=DEMO_CHUNK_SIZE,
        )
        root = args.work_dir / f"demo_{args.size}"
        generate_demo(spec, root / "tables", root / "truth")
        return
    result = measure(args.engine, args.tables_dir, args.dates, args.output, args.event_types, args.work_dir)
    args.result.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark from the command line: every size, engine and date set; print a table per size."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in ("_generate", "_measure"):
        _child_main(argv)
        return []
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n_customers in args.sizes:
        result = benchmark_size(
            n_customers, args.engines, args.timeout, args.work_dir.resolve(), args.results_dir
        )
        print(format_report(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
