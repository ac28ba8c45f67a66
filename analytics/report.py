"""The retention report job (`make report`): a report a data scientist hands to a retention manager, from
the input tables, the trained model and the latest scoring output (analytics.dated_report for dated tables,
analytics.snapshot_report for a snapshot table).

Written as a self-contained HTML page with its plots (also as PNG files) and tables (CSV) under
`report.output_dir`, and logged to MLflow as the artifacts of a report run, together or not at all. See
docs/report.md.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from analytics.dated_report import build_report
from analytics.html import render_html
from analytics.snapshot_report import build_snapshot_report
from features.build import is_snapshot
from features.inputs import load_inputs
from features.io import fingerprint
from features.provenance import git_commit, resolved_yaml
from features.publish import Publication, check_can_write, spreadsheet_safe_frame
from features.snapshot import label_period
from models.tracking import TrackingSettings, tracked_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and its headline numbers."""

    html_path: Path
    files: list[Path]
    run_id: str
    metrics: dict[str, float]


def report(cfg: DictConfig) -> ReportResult:
    """Build the report, then publish its files (HTML, PNGs, CSVs) and the MLflow report run together."""
    import matplotlib.pyplot as plt
    import mlflow

    out = Path(cfg.report.output_dir)
    check_can_write(out, [], "report.output_dir")
    TrackingSettings.from_config(cfg.mlflow).setup()
    if is_snapshot(cfg):
        built, inputs = build_snapshot_report(cfg)
    else:
        tables, _ = load_inputs(cfg)
        built, inputs = build_report(cfg, tables.con, set(tables.report.present)), tables.files
    images: dict[str, bytes] = {}
    for section in built.sections:
        for name, figure in section["figures"].items():
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            images[name] = buffer.getvalue()
    tables_by_file = {
        "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in f"{section['title']}_{name}".lower())
        + ".csv": table
        for section in built.sections
        for name, table in section["tables"].items()
    }
    page = render_html(built, images)
    data_fingerprint, _ = fingerprint(inputs)
    commit, dirty = git_commit()
    tags = {"stage": "report", "data.name": cfg.data.name, "data.fingerprint": data_fingerprint,
            "git.commit": commit, "git.dirty": str(dirty).lower()}  # fmt: skip
    period = label_period(cfg.data.label).describe() if is_snapshot(cfg) else None
    if period:
        tags["label.period"] = period
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "report"
        staging.mkdir()
        for name, data in images.items():
            (staging / name).write_bytes(data)
        for name, table in tables_by_file.items():
            spreadsheet_safe_frame(table).to_csv(staging / name, index=False)
        (staging / "report.html").write_text(page, encoding="utf-8")
        names = sorted(p.name for p in staging.iterdir())
        with Publication() as publication:
            for name in names:
                publication.stage(
                    out / name, lambda temp, name=name: shutil.copyfile(staging / name, temp), "report.output_dir",
                    replace_folder=True,
                )  # fmt: skip
            with tracked_run("report", tags) as run:
                mlflow.log_metrics(built.metrics)
                info = Path(tmp) / "run_info"
                info.mkdir()
                (info / "resolved_config.yaml").write_text(resolved_yaml(cfg))
                mlflow.log_artifacts(str(info), artifact_path="run_info")
                mlflow.log_artifacts(str(staging), artifact_path="report")
                publication.swap()
    files = [out / name for name in names]
    log.info(
        "wrote %s (%d sections, %d plots) and logged it to MLflow run %s; annual retention %.1f%%, "
        "expected lifetime %.1f years%s",
        out / "report.html", len(built.sections), len(images), run.info.run_id,
        100 * built.metrics.get("annual_retention", float("nan")), built.metrics.get("expected_lifetime_years", float("nan")),
        f"; the churn column covers {period}" if period else "",
    )  # fmt: skip
    return ReportResult(out / "report.html", files, run.info.run_id, dict(built.metrics))
