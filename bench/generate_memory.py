"""Benchmark of the demo data generator: wall time, peak memory, rows and size on disk for N customers.

Runs :func:`features.demo.dated.generate_demo` in this process (no subprocess), samples the resident set size
from ``/proc/self/status`` in a background thread, and writes ``bench/results/generate_<N>.json``.

    python bench/generate_memory.py                # 1,000,000 customers
    python bench/generate_memory.py 20000          # 20,000 customers
    python bench/generate_memory.py 20000 --chunk-size 10000 --keep-output --out-dir /tmp/demo
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rss import MIB, RssSampler, current_rss_bytes, peak_rss_bytes  # bench/ is the script's folder

from features.demo.dated import GENERATOR_VERSION, DemoSpec, generate_demo

logger = logging.getLogger("bench.generate_memory")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def directory_sizes(directory: Path) -> dict[str, int]:
    """Bytes on disk per file name in ``directory``."""
    return {path.name: path.stat().st_size for path in sorted(directory.iterdir()) if path.is_file()}


def run_benchmark(n_customers: int, chunk_size: int, seed: int, months: int, out_dir: Path) -> dict[str, Any]:
    """Generate the demo data for ``n_customers`` into ``out_dir`` and measure it."""
    spec = DemoSpec(n_customers=n_customers, months=months, seed=seed, chunk_size=chunk_size)
    rss_before = current_rss_bytes()
    sampler = RssSampler()
    sampler.start()
    began = time.perf_counter()
    try:
        summary = generate_demo(spec, out_dir / "tables", out_dir / "truth", progress=True)
    finally:
        seconds = time.perf_counter() - began
        sampler.stop()
    table_bytes = directory_sizes(summary.tables_dir)
    truth_bytes = directory_sizes(summary.truth_dir)
    trace = sampler.trace[:: max(1, len(sampler.trace) // 200)]  # at most ~200 points in the result file
    return {
        "benchmark": "generate_memory",
        "generator_version": GENERATOR_VERSION,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_customers": n_customers,
        "chunk_size": chunk_size,
        "n_chunks": -(-n_customers // chunk_size),
        "months": months,
        "seed": seed,
        "seconds": round(seconds, 2),
        "customers_per_second": round(n_customers / seconds, 1),
        "peak_rss_mib": round(peak_rss_bytes() / MIB, 1),
        "peak_sampled_rss_mib": round(sampler.peak_bytes / MIB, 1),
        "rss_before_mib": round(rss_before / MIB, 1),
        "rows": summary.rows,
        "bytes_on_disk": {**table_bytes, **{f"truth/{name}": size for name, size in truth_bytes.items()}},
        "total_mib_on_disk": round((sum(table_bytes.values()) + sum(truth_bytes.values())) / MIB, 1),
        "tables_mib_on_disk": round(sum(table_bytes.values()) / MIB, 1),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "rss_trace_seconds_bytes": trace,
    }


def format_report(result: dict[str, Any]) -> str:
    """A short human-readable table of one benchmark result."""
    lines = [
        f"demo generator benchmark: {result['n_customers']:,} customers "
        f"({result['n_chunks']} chunk(s), chunk_size {result['chunk_size']:,}, {result['months']} months)",
        f"  wall time          {result['seconds']:>12,.1f} s",
        f"  peak RSS           {result['peak_rss_mib']:>12,.1f} MiB (ru_maxrss)",
        f"  peak sampled RSS   {result['peak_sampled_rss_mib']:>12,.1f} MiB (VmRSS, every 0.2 s)",
        f"  RSS before run     {result['rss_before_mib']:>12,.1f} MiB",
        f"  size on disk       {result['total_mib_on_disk']:>12,.1f} MiB (tables {result['tables_mib_on_disk']:,.1f})",
        "  rows:",
    ]
    lines += [f"    {name:<24}{count:>14,}" for name, count in result["rows"].items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "n_customers", nargs="?", type=int, default=1_000_000, help="customers (default 1,000,000)"
    )
    parser.add_argument("--chunk-size", type=int, default=DemoSpec.chunk_size, help="customers per chunk")
    parser.add_argument("--months", type=int, default=DemoSpec.months, help="length of the data window")
    parser.add_argument("--seed", type=int, default=DemoSpec.seed, help="generator seed")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where to write the data (default: a temp dir)"
    )
    parser.add_argument("--keep-output", action="store_true", help="keep the generated data afterwards")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where to write the JSON result"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from the command line, write the JSON result and print a summary."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="churnwise-bench-"))
    try:
        result = run_benchmark(args.n_customers, args.chunk_size, args.seed, args.months, out_dir)
    finally:
        if not args.keep_output:
            shutil.rmtree(out_dir, ignore_errors=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    result_path = args.results_dir / f"generate_{args.n_customers}.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(format_report(result))
    print(f"  result written to {result_path}")
    return result


if __name__ == "__main__":
    main()
