"""The safety mechanisms on a few hand-made files: writers that only touch what churnwise wrote, publishing
that rolls back, spreadsheet-safe CSV cells, secrets hidden in every form, settings checked before work, and
runs of killed jobs marked failed."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churnwise.settings import check_settings, check_targets
from features.dates import config_date
from features.errors import ConfigError
from features.publish import (
    RECORD,
    HistoryTable,
    Publication,
    PublishError,
    check_can_write,
    csv_copy_sql,
    owned_files,
    process_folder_name,
    publish_files,
    record_files,
    remove_leftovers,
    spreadsheet_safe_frame,
)
from features.redaction import SecretFilter, redact, redacted_config, scrub, secret_values
from features.sql import identifier, literal, safe_name


def dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def writer(text: str):
    return lambda temp: temp.write_text(text)


# -- never touching what churnwise did not write -------------------------------------------------------


def test_a_folder_of_other_files_is_refused_and_a_new_or_own_folder_is_not(tmp_path: Path) -> None:
    theirs = tmp_path / "desktop"
    theirs.mkdir()
    (theirs / "holiday.jpg").write_text("x")
    with pytest.raises(
        ConfigError,
        match=r"report.output_dir: .* already holds files churnwise did not write \(holiday.jpg\)",
    ):
        publish_files({theirs / "report.html": writer("<html>")}, "report.output_dir")
    assert sorted(p.name for p in theirs.iterdir()) == ["holiday.jpg"]

    ours = tmp_path / "report"
    publish_files({ours / "report.html": writer("one")}, "report.output_dir")
    assert owned_files(ours) == {"report.html"}
    (ours / "notes.txt").write_text("the user's, beside our file")
    publish_files({ours / "report.html": writer("two")}, "report.output_dir")  # our folder: fine
    assert (ours / "report.html").read_text() == "two" and (ours / "notes.txt").exists()


def test_a_file_of_someone_elses_under_an_outputs_name_is_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "scores"
    publish_files({folder / "scores.parquet": writer("ours")}, "score.output_dir")
    (folder / "scores.csv").write_text("the user's own scores.csv")
    with pytest.raises(ConfigError, match="holds scores.csv, which churnwise did not write"):
        publish_files(
            {folder / "scores.parquet": writer("new"), folder / "scores.csv": writer("new")},
            "score.output_dir",
        )
    assert (folder / "scores.csv").read_text() == "the user's own scores.csv"
    assert (folder / "scores.parquet").read_text() == "ours"


def test_a_replaced_folder_loses_only_its_own_stale_files(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    with Publication() as publication:
        for name in ("report.html", "old_plot.png"):
            publication.stage(folder / name, writer(name), "report.output_dir", replace_folder=True)
    (folder / "mine.txt").write_text("not ours")
    with Publication() as publication:
        publication.stage(folder / "report.html", writer("again"), "report.output_dir", replace_folder=True)
    assert sorted(p.name for p in folder.iterdir()) == [RECORD, "mine.txt", "report.html"]
    assert owned_files(folder) == {"report.html"}


def test_a_failure_after_the_swap_puts_every_previous_file_back(tmp_path: Path) -> None:
    folder = tmp_path / "scores"
    publish_files({folder / "a.csv": writer("a1"), folder / "b.csv": writer("b1")}, "key")
    with pytest.raises(RuntimeError, match="history"), Publication() as publication:
        publication.stage(folder / "a.csv", writer("a2"), "key")
        publication.stage(folder / "b.csv", writer("b2"), "key")
        publication.stage(folder / "c.csv", writer("c2"), "key")
        publication.swap()
        assert (folder / "a.csv").read_text() == "a2"  # swapped in, still revertible
        raise RuntimeError("the history commit failed")
    assert {p.name: p.read_text() for p in folder.iterdir() if p.name != RECORD} == {
        "a.csv": "a1",
        "b.csv": "b1",
    }


def test_a_write_that_fills_the_disk_publishes_nothing_and_leaves_no_temp(tmp_path: Path) -> None:
    folder = tmp_path / "scores"
    publish_files({folder / "a.csv": writer("a1")}, "key")

    def full(temp: Path) -> None:
        temp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(
        PublishError, match="cannot write .*b.csv: no space left on the device. Nothing was published"
    ):
        publish_files({folder / "a.csv": writer("a2"), folder / "b.csv": full}, "key")
    assert (
        sorted(p.name for p in folder.iterdir()) == [RECORD, "a.csv"]
        and (folder / "a.csv").read_text() == "a1"
    )


def test_leftovers_of_killed_runs_are_removed_or_restored_and_live_ones_kept(tmp_path: Path) -> None:
    gone, alive = dead_pid(), os.getppid()
    (tmp_path / f".scores.csv.tmp-{gone}").write_text("half written")
    (tmp_path / "scores.parquet").write_text("new, never committed")
    (tmp_path / f".scores.parquet.bak-{gone}").write_text("previous")
    (tmp_path / f".report.html.tmp-{alive}").write_text("a running job's")
    (tmp_path / f".notes.txt.tmp-{gone}").write_text("not beside an output of this write: left alone")
    removed = remove_leftovers(tmp_path, ["scores.csv", "scores.parquet", "report.html"])
    assert [p.name for p in removed] == [f".scores.csv.tmp-{gone}"]
    assert (tmp_path / "scores.parquet").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".notes.txt.tmp-{gone}", f".report.html.tmp-{alive}", "scores.parquet"]
    )
    # In the temp folder: the work folders of killed processes go, a running one's and anything else stay.
    spill = tmp_path / "spill"
    for name in (process_folder_name(gone), process_folder_name(alive), f"pid-{gone}", "other"):
        (spill / name).mkdir(parents=True)
    assert [p.name for p in remove_leftovers(spill)] == [process_folder_name(gone)]
    assert sorted(p.name for p in spill.iterdir()) == sorted(
        [process_folder_name(alive), f"pid-{gone}", "other"]
    )


def test_check_can_write_names_a_file_where_a_folder_belongs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="score.output_dir: .* is a file, not a folder"):
        check_can_write(tmp_path / "file", ["scores.csv"], "score.output_dir")
    record_files(tmp_path, ["a"])
    record_files(tmp_path, ["b"], forget=["a"])
    assert owned_files(tmp_path) == {"b"}


# -- the history table -----------------------------------------------------------------------------------


def test_a_history_of_another_shape_is_refused_and_a_failed_replacement_rolls_back(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TEMP TABLE scoring_output AS SELECT 1::BIGINT AS customer_id, DATE '2024-01-01' AS as_of, 0.5 AS p_churn"
    )
    history = HistoryTable(con, tmp_path / "h.duckdb", "scores-acme-eu")  # a hyphen: quoted, not refused
    with history.replacing("scoring_output", "as_of", date(2024, 1, 1)):
        pass
    assert con.execute(f"SELECT count(*) FROM {history.name}").fetchall()[0][0] == 1
    with pytest.raises(RuntimeError), history.replacing("scoring_output", "as_of", date(2024, 1, 1)):
        raise RuntimeError("the file swap failed")
    assert con.execute(f"SELECT count(*) FROM {history.name}").fetchall()[0][0] == 1
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scoring_output AS SELECT '1' AS customer_id, DATE '2024-02-01' AS as_of, 0.5 AS p_churn"
    )
    with pytest.raises(
        ConfigError, match=r"score.table: .*another shape \(customer_id is BIGINT there and VARCHAR now\)"
    ):
        history.check("scoring_output")
    history.detach()


# -- spreadsheet cells -------------------------------------------------------------------------------------


def test_cells_that_start_like_a_formula_are_escaped_in_csv_and_numbers_are_not(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"id": ["=1+1", "+33 1", "-2", "@SUM(A1)", "\tx", "plain", None], "value": [-1.5, 2, 3, 4, 5, 6, 7]}
    )
    safe = spreadsheet_safe_frame(frame)
    assert safe["id"].tolist()[:6] == ["'=1+1", "'+33 1", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert pd.isna(safe["id"].iloc[6]) and safe["value"].tolist() == frame["value"].tolist()
    con = duckdb.connect()
    con.register("out", frame)
    con.execute("CREATE TABLE scoring_output AS SELECT * FROM out")
    path = tmp_path / "o'ut.csv"
    con.execute(csv_copy_sql(con, "scoring_output", path))
    written = pd.read_csv(path, keep_default_na=False)
    assert (
        written["id"].tolist()[:4] == ["'=1+1", "'+33 1", "'-2", "'@SUM(A1)"]
        and written["value"].iloc[0] == -1.5
    )


# -- quoting, names, dates, targets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["x'; drop table scores; --", "../escape", "/tmp/x", "a b", "a.b", "", "-x", "é"]
)
def test_names_that_become_folders_or_tables_refuse_anything_but_plain_words(name: str) -> None:
    with pytest.raises(ConfigError, match="data.name: .* cannot name a folder or a table"):
        safe_name(name, "data.name")


def test_identifiers_and_literals_are_quoted() -> None:
    assert identifier('a"b') == '"a""b"' and identifier("Account Manager") == '"Account Manager"'
    assert literal("it's") == "'it''s'" and literal(date(2024, 2, 29)) == "DATE '2024-02-29'"
    assert (
        literal(Path("/tmp/it's")) == "'/tmp/it''s'" and literal(None) == "NULL" and literal(True) == "TRUE"
    )
    with pytest.raises(ValueError):
        literal(float("inf"))


@pytest.mark.parametrize(
    ("value", "message"),
    [("2024-02-30", "day is out of range"), ("30/01/2024", "YYYY-MM-DD"), ("20240101", "YYYY-MM-DD")],
)
def test_a_date_setting_must_exist(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"score.as_of: '{value}' is not a date.*{message}"):
        config_date(value, "score.as_of")
    assert config_date("2024-02-29", "score.as_of") == date(2024, 2, 29) and config_date(None, "k") is None


def test_targets_only_name_churnwise_or_estimator_classes() -> None:
    check_targets(
        {
            "model": {"_target_": "lightgbm.LGBMClassifier"},
            "x": [{"_target_": "decisions.actions.CorrectiveAction"}],
        }
    )
    for target in ("os.system", "builtins.eval", "subprocess.Popen", "lightgbm", "sklearn.x; rm"):
        with pytest.raises(ConfigError, match=r"model._target_: .* a config never names other code"):
            check_targets({"model": {"_target_": target}})


def test_outputs_outside_their_root_and_bad_numbers_are_refused_naming_the_key(
    make_cfg, tmp_path: Path
) -> None:
    check_settings(make_cfg(), "score")
    check_settings(make_cfg(), "report")
    bad = {
        f"score.output_dir={tmp_path.parent}": "score.output_dir: .* outside paths.output_dir",
        "score.database=${paths.output_dir}/../x.duckdb": "score.database: .* outside paths.output_dir",
        "score.chunk_rows=0": "score.chunk_rows: 0 is not a whole number of at least 1",
        "actions.budget=-1": "actions.budget: -1 is not a number at least 0",
        "actions.low_risk_below=1.5": "actions.low_risk_below",
        "score.max_input_lag_days=-3": "score.max_input_lag_days",
        "data.name=a/b": "data.name",
        "score.table='x; y'": "score.table",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            check_settings(make_cfg(override), "score")


# -- secrets -----------------------------------------------------------------------------------------------

SECRET = "pa/ss#w0rd@%x"


@pytest.mark.parametrize(
    "uri",
    [
        f"postgresql://u:{SECRET}@db:5432/x",  # not encoded: '/', '#', '@' and '%' in the password
        "postgresql://u:pa%2Fss%23w0rd%40%25x@db:5432/x",
        "http://u:pa%2Fss%23w0rd%40%25x@127.0.0.1:5000",
    ],
)
def test_a_password_with_any_characters_is_hidden_in_every_form(uri: str) -> None:
    assert "***@" in redact(uri) and "w0rd" not in redact(uri)
    secrets = secret_values({"data": {"uri": uri}}, environ={})
    text = f"cannot connect to {uri}; password {SECRET}; encoded pa%2Fss%23w0rd%40%25x"
    assert "w0rd" not in scrub(text, secrets)


def test_secret_settings_and_environment_variables_are_found_and_masked() -> None:
    config = {
        "mlflow": {"tracking_uri": "http://alice:t0psecret@h:1"},
        "db": {"password": "hunter22"},
        "n": 3,
    }
    secrets = secret_values(config, environ={"PGPASSWORD": "pg-pass-1", "MLFLOW_TRACKING_TOKEN": "tok-42x"})
    assert {"t0psecret", "hunter22", "pg-pass-1", "tok-42x"} <= secrets
    shown = redacted_config(config, secrets)
    assert shown == {"mlflow": {"tracking_uri": "http://alice:***@h:1"}, "db": {"password": "***"}, "n": 3}


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter({"hunter22"}))
    logger = logging.getLogger("churnwise-test-secrets")
    logger.addHandler(handler)
    try:
        logger.warning("connecting to %s", "postgresql://u:hunter22@db/x")
        try:
            raise ValueError("password=hunter22 refused")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert (
        "hunter22" not in stream.getvalue()
        and "ValueError" in stream.getvalue()
        and "***" in stream.getvalue()
    )


# -- runs of killed jobs --------------------------------------------------------------------------------


def test_runs_left_running_by_a_killed_process_are_marked_failed_and_their_unaliased_versions_deleted(
    tmp_path: Path,
) -> None:
    import mlflow

    from models.tracking import mark_killed_runs_failed, process_tags

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("killed", artifact_location=(tmp_path / "art").as_uri())
    client = mlflow.MlflowClient()
    killed = client.create_run(experiment, tags={**process_tags(), "churnwise.pid": str(dead_pid())})
    running = client.create_run(experiment, tags=process_tags())  # this very process: still running
    client.create_registered_model("m")
    orphan = client.create_model_version("m", f"runs:/{killed.info.run_id}/model", run_id=killed.info.run_id)
    kept = client.create_model_version("m", f"runs:/{killed.info.run_id}/model", run_id=killed.info.run_id)
    client.set_registered_model_alias("m", "champion", kept.version)

    assert mark_killed_runs_failed(experiment) == [killed.info.run_id]
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    assert "killed" in client.get_run(killed.info.run_id).data.tags["churnwise.stopped"]
    assert client.get_run(running.info.run_id).info.status == "RUNNING"
    assert [v.version for v in client.search_model_versions("name = 'm'")] == [kept.version]
    assert orphan.version != kept.version


def test_clean_data_removes_what_churnwise_generated_and_keeps_the_users_files(
    make_cfg, tmp_path: Path
) -> None:
    from churnwise.api import clean_data
    from features.demo.dated import DemoSpec, generate_demo
    from features.demo.telco import TelcoSpec, generate_telco

    cfg = make_cfg()
    data = Path(cfg.paths.data_dir)
    generate_demo(
        DemoSpec(n_customers=30, months=12, seed=1, chunk_size=30), data / "demo", data / "demo_truth"
    )
    generate_telco(TelcoSpec(n_customers=50, score_customers=10), data / "telco.csv")
    publish_files({data / "features" / "x_y" / "features.parquet": writer("f")}, "paths.features_dir")
    (data / "exports").mkdir()
    (data / "exports" / "customers.csv").write_text("the user's export")
    (data / "demo" / "notes.txt").write_text("the user's notes, in a generated folder")
    (tmp_path / "mlflow.db").write_text("a store")
    clean_data(cfg)
    left = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert left == ["demo/notes.txt", "exports/customers.csv"]
    assert not (tmp_path / "mlflow.db").exists()
