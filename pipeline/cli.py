"""The `churnwise` command: `churnwise <stage> [hydra overrides]`, the same stages as `make <stage>`.

It runs the stage's entry point (`pipeline/<stage>.py`) as `python -m pipeline.<stage>` does (as `__main__`,
so Hydra finds `conf/` beside the module's file); the stage module is looked up by name from the fixed list
below, never from other input.
"""

from __future__ import annotations

import runpy
import sys

STAGES = {
    "data": "generate", "generate": "generate", "validate": "validate", "features": "features",
    "train": "train", "tune": "tune", "promote": "promote", "score": "score", "readout": "readout", "report": "report",
    "ui": "ui", "clean-data": "clean", "clean": "clean",
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run `churnwise <stage> [overrides]`; `churnwise --help` lists the stages."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help") or args[0] not in STAGES:
        known = ", ".join(sorted(set(STAGES)))
        print(f"usage: churnwise <stage> [hydra overrides, e.g. debug=default]\n  stages: {known}")
        raise SystemExit(0 if args and args[0] in ("-h", "--help", "help") else 2)
    sys.argv = [f"churnwise {args[0]}", *args[1:]]
    runpy.run_module(f"pipeline.{STAGES[args[0]]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
