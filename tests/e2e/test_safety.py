"""Hostile-but-realistic use, as a user runs the stages (`python -m pipeline.<stage>`): every bad setting, bad
input or broken store stops the run with exit code 2 and one clear message naming the key (or the table,
column, rule and rows), no traceback, and nothing written or changed: data files, outputs, the scoring
history, MLflow runs, model versions and aliases are compared before and after each case."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from safety_helpers import changes, project_state, run_stage

pytestmark = pytest.mark.slow

DEBUG_DATA = Path("data") / "demo_debug"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project a user has trained, scored and reported on (small demo data)."""
    root = tmp_path_factory.mktemp("project")
    for stage in ("train", "score", "report"):
        done = run_stage(stage, f"paths.root_dir={root}", "debug=default")
        assert done.returncode == 0, done.output
    return root


@dataclass(frozen=True)
class Case:
    """One hostile run: the stage, its overrides (given the project root and a scratch folder), what the
    message must say, and what the case sets up first (undone afterwards)."""

    id: str
    stage: str
    overrides: Callable[[Path, Path], list[str]]
    expect: tuple[str, ...]
    setup: Callable[[Path, Path], contextlib.AbstractContextManager[None]] | None = None
    during: Callable[[Path, Path], contextlib.AbstractContextManager[None]] | None = (
        None  # around the run only
    )
    max_seconds: float | None = None
    secrets: tuple[str, ...] = field(default=())


def fixed(*overrides: str) -> Callable[[Path, Path], list[str]]:
    return lambda root, scratch: list(overrides)


@contextlib.contextmanager
def nothing(root: Path, scratch: Path) -> Iterator[None]:
    yield


# -- set-ups -----------------------------------------------------------------------------------------------


def user_folder(*names: str) -> Callable[[Path, Path], contextlib.AbstractContextManager[None]]:
    """A folder of a user's own files at scratch/mine."""

    @contextlib.contextmanager
    def setup(root: Path, scratch: Path) -> Iterator[None]:
        folder = scratch / "mine"
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(f"the user's {name}\n")
        yield

    return setup


def user_folder_in(
    where: str, *names: str
) -> Callable[[Path, Path], contextlib.AbstractContextManager[None]]:
    """A folder of a user's own files inside the project (root/<where>)."""

    @contextlib.contextmanager
    def setup(root: Path, scratch: Path) -> Iterator[None]:
        folder = root / where
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(f"the user's {name}\n")
        try:
            yield
        finally:
            shutil.rmtree(folder)

    return setup


@contextlib.contextmanager
def store_copy(root: Path, scratch: Path) -> Iterator[None]:
    shutil.copy(root / "mlflow.db", scratch / "mlflow.db")
    yield


@contextlib.contextmanager
def read_only_store(root: Path, scratch: Path) -> Iterator[None]:
    shutil.copy(root / "mlflow.db", scratch / "mlflow.db")
    subprocess.run(["chattr", "+i", str(scratch / "mlflow.db")], check=True)  # read-only even for root
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(scratch / "mlflow.db")], check=True)


@contextlib.contextmanager
def locked_store(root: Path, scratch: Path) -> Iterator[None]:
    con = sqlite3.connect(root / "mlflow.db", timeout=1)
    con.execute("BEGIN EXCLUSIVE")  # another process writing to the store
    try:
        yield
    finally:
        con.rollback()
        con.close()


@contextlib.contextmanager
def damaged_store(root: Path, scratch: Path) -> Iterator[None]:
    (scratch / "mlflow.db").write_bytes(b"\x00garbage, not a database" * 100)
    yield


@contextlib.contextmanager
def artifacts_moved(root: Path, scratch: Path) -> Iterator[None]:
    (root / "mlartifacts").rename(scratch / "mlartifacts")
    try:
        yield
    finally:
        (scratch / "mlartifacts").rename(root / "mlartifacts")


@contextlib.contextmanager
def model_files_moved(root: Path, scratch: Path) -> Iterator[None]:
    models = sorted(p for p in (root / "mlartifacts").rglob("models") if p.is_dir() and any(p.glob("m-*")))
    assert models, "test setup: no logged models under mlartifacts"
    for i, folder in enumerate(models):
        folder.rename(scratch / f"models-{i}")
    try:
        yield
    finally:
        for i, folder in enumerate(models):
            (scratch / f"models-{i}").rename(folder)


@contextlib.contextmanager
def history_of_another_shape(root: Path, scratch: Path) -> Iterator[None]:
    """An earlier history whose customer ids were text: the output of this run cannot be appended to it."""
    database = root / "outputs" / "text_ids.duckdb"
    con = duckdb.connect(str(database))
    con.execute(f"ATTACH '{root / 'outputs' / 'churnwise.duckdb'}' AS h (READ_ONLY)")
    con.execute(
        "CREATE TABLE scores AS SELECT * REPLACE (CAST(customer_id AS VARCHAR) AS customer_id) FROM h.scores"
    )
    con.close()
    try:
        yield
    finally:
        database.unlink()


@contextlib.contextmanager
def not_an_mlflow_server(root: Path, scratch: Path) -> Iterator[None]:
    """Something on 127.0.0.1 that accepts connections and answers 404 to everything (a wrong port)."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    (scratch / "port").write_text(str(server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def full_disk(root: Path, scratch: Path) -> Iterator[None]:
    """A real file system with almost no space left, where the scores go."""
    mount = root / "outputs" / "small_disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"this test mounts a small tmpfs (root, as CI runs): {done.stderr}"
    try:
        yield
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


# -- the cases ---------------------------------------------------------------------------------------------

CASES = [
    # 1. never destroy what churnwise did not write
    Case("generate_into_a_users_folder", "generate",
         lambda root, scratch: [f"data.path={scratch / 'mine'}"],
         ("data.path", "holds files the demo generator did not write (customers.csv, notes.txt)"),
         user_folder("customers.csv", "notes.txt")),
    Case("report_into_a_folder_of_other_files", "report", fixed("report.output_dir=${paths.output_dir}/desktop"),
         ("report.output_dir", "already holds files churnwise did not write (notes.txt, photo.png)"),
         user_folder_in("outputs/desktop", "notes.txt", "photo.png")),
    Case("report_outside_its_root", "report", lambda root, scratch: [f"report.output_dir={scratch / 'Desktop'}"],
         ("report.output_dir", "outside paths.output_dir")),
    Case("score_over_a_users_file", "score", fixed("score.output_dir=${paths.output_dir}/theirs"),
         ("score.output_dir", "holds scores.csv, which churnwise did not write"),
         user_folder_in("outputs/theirs", "scores.csv")),
    Case("features_into_a_users_folder", "features", fixed("paths.features_dir=${paths.data_dir}/exports"),
         ("paths.features_dir", "holds manifest.json, which churnwise did not write"),
         user_folder_in("data/exports", "manifest.json")),
    # 2. config strings never reach SQL or a path unchecked
    Case("data_name_with_sql", "score", fixed("data.name=\"x'; drop table scores; --\"", "namespace=per_data"),
         ("data.name", "cannot name a folder or a table")),
    Case("data_name_leaving_its_folder", "score", fixed("data.name=../escape", "namespace=per_data"),
         ("data.name", "'../escape' cannot name a folder or a table")),
    Case("data_name_absolute", "train", fixed("data.name=/tmp/elsewhere"), ("data.name", "cannot name a folder")),
    Case("label_name_with_a_slash", "features", fixed("label.name=a/../../b"), ("label.name", "cannot name a folder")),
    Case("mapping_reading_outside_the_folder", "validate",
         lambda root, scratch: ["data=tables", f"data.path={root / DEBUG_DATA}", "+data.mapping.customers.from=../../../etc/passwd"],
         ("data.mapping.customers.from", "is not a file name in data.path")),
    Case("history_table_with_sql", "score", fixed("score.table='scores; drop table scores'"),
         ("score.table", "cannot name a folder or a table")),
    Case("history_table_with_a_quote", "score", fixed("score.table='x\"y'"), ("score.table", "cannot name")),
    Case("scores_outside_their_root", "score", lambda root, scratch: [f"score.output_dir={scratch}"],
         ("score.output_dir", "outside paths.output_dir")),
    Case("scores_climbing_out", "score", fixed("score.output_dir=${paths.output_dir}/../../escape"),
         ("score.output_dir", "outside paths.output_dir")),
    Case("history_outside_its_root", "score", lambda root, scratch: [f"score.database={scratch / 'h.duckdb'}"],
         ("score.database", "outside paths.output_dir")),
    Case("features_outside_their_root", "train", lambda root, scratch: [f"paths.features_dir={scratch}"],
         ("paths.features_dir", "outside paths.data_dir")),
    Case("model_name_with_a_slash", "train", fixed("mlflow.registered_model_name=a/b"),
         ("mlflow.registered_model_name", "cannot name")),
    Case("revenue_feature_with_sql", "score", fixed("value.revenue_feature='x); drop table scores; --'"),
         ("value.revenue_feature", "is not a feature of model")),
    Case("target_naming_other_code", "train", fixed("model._target_=os.system", "+model.command=id"),
         ("model._target_", "'os.system' is not a class of churnwise or of an estimator library")),
    Case("action_target_naming_other_code", "score", fixed("actions.catalogue.discount._target_=subprocess.run"),
         ("actions.catalogue.discount._target_", "never names other code")),
    # 3. decision rules and feature SQL never run arbitrary SQL
    Case("ladder_rule_reading_a_file", "score",
         fixed("ladder.rules.partner=\"(SELECT count(*) FROM read_csv('/etc/passwd')) > 0\""),
         ("ladder.rules.partner", "is not allowed: a subquery")),
    Case("contact_rule_with_a_second_statement", "score",
         fixed("actions.contact_rule='TRUE; DROP TABLE scores'"),
         ("actions.contact_rule", "more than one statement")),
    Case("cost_reading_the_environment", "score",
         fixed("actions.catalogue.discount.cost=\"length(getenv('HOME'))\""),
         ("actions.catalogue.discount.cost", "is not allowed: the function getenv()")),
    Case("strategic_points_listing_files", "score",
         fixed("valuation.strategic.points.partner.when=\"glob('/etc/*') IS NOT NULL\""),
         ("valuation.strategic.points.partner.when", "is not allowed")),
    Case("rule_cut_short_by_a_comment", "score", fixed("ladder.rules.advocate='TRUE -- referrals_made_365d >= 1'"),
         ("ladder.rules.advocate", "a comment")),
    Case("feature_sql_reading_a_file", "train",
         fixed("features.families.tenure.features.tenure_days.sql=\"(SELECT count(*) FROM read_csv('/etc/passwd'))\""),
         ("features.families.tenure.features.tenure_days.sql", "is not allowed: a subquery")),
    # 4. publishing: every check that can fail runs first; stores that cannot be used
    Case("history_of_another_shape", "score", fixed("score.database=${paths.output_dir}/text_ids.duckdb"),
         ("score.table", "written by runs of another shape", "customer_id is VARCHAR there and BIGINT now"),
         history_of_another_shape),
    Case("read_only_tracking_store", "score", lambda root, scratch: [f"mlflow.tracking_uri=sqlite:///{scratch}/mlflow.db"],
         ("mlflow.tracking_uri", "cannot be written"), read_only_store),
    Case("locked_tracking_store", "score", fixed(), ("mlflow.tracking_uri", "locked", "another process"),
         during=locked_store),
    Case("damaged_tracking_store", "score", lambda root, scratch: [f"mlflow.tracking_uri=sqlite:///{scratch}/mlflow.db"],
         ("mlflow.tracking_uri", "is not an SQLite database"), damaged_store),
    Case("tracking_server_not_answering", "score", lambda root, scratch: [f"mlflow.tracking_uri=http://127.0.0.1:{closed_port()}"],
         ("mlflow.tracking_uri", "no tracking server answers at 127.0.0.1"), max_seconds=20),
    Case("tracking_server_with_credentials", "train",
         lambda root, scratch: [f"mlflow.tracking_uri=http://alice:pa%2Fss%23w0rd@127.0.0.1:{closed_port()}"],
         ("mlflow.tracking_uri http://alice:***@127.0.0.1", "no tracking server answers"), max_seconds=20,
         secrets=("pa%2Fss%23w0rd", "pa/ss#w0rd")),
    Case("tracking_uri_at_something_else", "train",
         lambda root, scratch: [f"mlflow.tracking_uri=http://127.0.0.1:{(scratch / 'port').read_text()}"],
         ("mlflow.tracking_uri", "does not answer as an MLflow tracking server", "404"), not_an_mlflow_server,
         max_seconds=20),
    Case("model_artifacts_moved_away", "score", fixed(), ("has no feature manifest that can be read", "moved or deleted"), artifacts_moved),
    Case("model_files_moved_away", "score", fixed(), ("score.model_uri", "the model's files cannot be read"),
         model_files_moved),
    Case("no_space_left_for_the_scores", "score", fixed("score.output_dir=${paths.output_dir}/small_disk/scores"),
         ("cannot write", "no space left on the device", "Nothing was published"), full_disk),
    # 9. settings that are not what they must be
    Case("as_of_not_a_date", "score", fixed("score.as_of=last-monday"), ("score.as_of", "is not a date", "YYYY-MM-DD")),
    Case("as_of_that_does_not_exist", "score", fixed("score.as_of=2024-02-30"), ("score.as_of", "'2024-02-30' is not a date")),
    Case("chunk_rows_zero", "score", fixed("score.chunk_rows=0"), ("score.chunk_rows", "is not a whole number of at least 1")),
    Case("negative_budget", "score", fixed("actions.budget=-500"), ("actions.budget", "is not a number at least 0")),
    Case("model_uri_not_a_uri", "score", fixed("score.model_uri=/tmp/model.pkl"), ("score.model_uri", "is not a model URI")),
    Case("unknown_model", "score", fixed("score.model_uri=models:/nobody@champion"),
         ("score.model_uri models:/nobody@champion", "no such registered model version")),
    Case("observation_start_month_13", "train", fixed("observation.start=2024-13-01"), ("observation.start", "is not a date")),
    Case("dates_per_batch_zero", "features", fixed("engine.dates_per_batch=0"), ("engine.dates_per_batch", "at least 1")),
    Case("report_period_not_dividing_a_year", "report", fixed("report.period_months=5"), ("report.period_months", "does not divide a year")),
    Case("generator_with_a_bad_start", "generate", fixed("data.generator.start_date=2022-01-15", "data.path=${paths.data_dir}/other", "data.truth_path=${paths.data_dir}/other_truth"),
         ("data.generator", "first day of a month")),
    Case("tables_folder_is_a_file", "validate", lambda root, scratch: [f"data.path={root / DEBUG_DATA / 'orders.parquet'}", "data.generate_if_missing=false"],
         ("data.path", "is a file")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_run_stops_cleanly_and_changes_nothing(project: Path, tmp_path: Path, case: Case) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with (case.setup or nothing)(project, scratch):
        before = project_state(project)
        with (case.during or nothing)(project, scratch):
            done = run_stage(
                case.stage, f"paths.root_dir={project}", "debug=default", *case.overrides(project, scratch)
            )
        after = project_state(project)
    assert done.returncode == 2, done.output
    assert "Traceback" not in done.output, done.output
    for phrase in case.expect:
        assert phrase in done.output, f"{phrase!r} not in:\n{done.output}"
    assert changes(before, after) == [], done.output
    assert not list(scratch.rglob(".*.tmp-*")), "temp files left behind"
    if case.max_seconds is not None:
        assert done.seconds < case.max_seconds, f"took {done.seconds:.0f} s"
    for secret in case.secrets:
        assert secret not in done.output
        for path in project.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret!r} in {path}"


def test_the_corpus_has_forty_cases_or_more() -> None:
    from test_safety_inputs import INPUT_CASES  # the bad tables, run the same way

    assert len({c.id for c in CASES} | {c.id for c in INPUT_CASES}) >= 40


def test_a_project_in_a_folder_with_a_quote_and_a_hyphenated_data_name_runs_end_to_end(
    tmp_path: Path,
) -> None:
    """Paths and names that used to reach SQL unquoted: a root path with a quote and a space, and a data name
    with a hyphen, whose history table is scores_acme-eu."""
    root = tmp_path / "it's a project"
    names = ["debug=default", "data.name=acme-eu", "namespace=per_data"]
    for stage in ("train", "score", "report"):
        done = run_stage(stage, f'paths.root_dir="{root}"', *names)
        assert done.returncode == 0, done.output
    scores = pd.read_parquet(root / "outputs" / "acme-eu" / "scores" / "scores.parquet")
    con = duckdb.connect(str(root / "outputs" / "churnwise.duckdb"), read_only=True)
    assert con.execute('SELECT count(*) FROM "scores_acme-eu"').fetchall()[0][0] == len(scores) > 0
    assert (root / "outputs" / "acme-eu" / "report" / "report.html").is_file()
