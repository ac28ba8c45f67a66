"""Writing outputs without ever destroying what churnwise did not write, all together or not at all.

Every folder churnwise writes files into holds a record of the files it wrote there (`.churnwise-files.json`).
A writer only replaces or removes files listed in that record: a folder that holds other files and no record
(a user's folder, a Desktop) is refused before anything is written, and a file of someone else's that has
the name of an output is never overwritten.

`Publication` writes each output beside its target first (the slow part, where a full disk or a failure
shows up), then swaps them all in, keeping the previous files until `commit`; `rollback` puts the previous
files back. A stage publishes its files, its history table and its MLflow run inside one `Publication`, so
a failure at any step leaves the previous state as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from features.errors import ConfigError
from features.sql import identifier, literal, literal_list, qualified

log = logging.getLogger(__name__)

RECORD = ".churnwise-files.json"
# Leftovers of a churnwise process beside the file it writes: `.<name>.tmp-<pid>`, `.<name>.bak-<pid>`,
# `.<name>.parts-<pid>`; and a process's own work folder `churnwise-<pid>` (spill files) in the temp folder.
LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|bak|parts)-(?P<pid>\d+)$|^churnwise-(?P<own>\d+)$")


def process_folder_name(pid: int) -> str:
    """The name of a process's own work folder (DuckDB's spill files, scoring chunks)."""
    return f"churnwise-{pid}"


class PublishError(Exception):
    """An output could not be written (a full disk, a folder that cannot be written); nothing was published."""


def process_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove what churnwise processes that no longer run (killed while writing) left in `folder`: the temp,
    backup and part files beside `names` (a backup is put back: its run never committed), or with `names`
    None, their work folders `churnwise-<pid>`. Nothing else is touched. Returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    wanted = None if names is None else set(names)
    for entry in folder.iterdir():
        found = LEFTOVER.match(entry.name)
        if not found or (found["own"] is None) != (wanted is not None):
            continue
        if wanted is not None and found["name"] not in wanted:
            continue
        pid = int(found["pid"] or found["own"])
        if pid == os.getpid() or process_running(pid):
            continue
        if found["kind"] == "bak":
            target = folder / found["name"]
            os.replace(entry, target)
            log.warning("restored %s: a killed run had replaced it without finishing", target)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        log.info("removed %d file(s) left in %s by runs that were killed", len(removed), folder)
    return removed


def owned_files(folder: Path) -> set[str]:
    """Names of the files churnwise wrote in `folder` (its record), empty when there is none."""
    record = folder / RECORD
    if not record.is_file():
        return set()
    try:
        return set(json.loads(record.read_text()).get("files", []))
    except (OSError, ValueError):
        return set()


def foreign_files(folder: Path) -> list[str]:
    """Entries of `folder` that churnwise did not write (not in its record, not its own leftovers)."""
    if not folder.is_dir():
        return []
    owned = owned_files(folder) | {RECORD}
    return sorted(e.name for e in folder.iterdir() if e.name not in owned and not LEFTOVER.match(e.name))


def check_can_write(folder: Path, names: Iterable[str], key: str) -> None:
    """Refuse, before anything is written, to write `names` into `folder` when that would touch what
    churnwise did not write: a folder of other files with no record of ours, or an existing file of another's
    under one of the names. `key` is the config key that chose the folder."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is a file, not a folder")
    if not folder.is_dir():
        return
    foreign = foreign_files(folder)
    owned = owned_files(folder)
    taken = sorted(set(names) & set(foreign))
    if taken:
        raise ConfigError(
            f"{key}: {folder} holds {', '.join(taken)}, which churnwise did not write; it never overwrites "
            f"files it did not write. Move them away or choose another folder for {key}"
        )
    if foreign and not owned:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"{key}: {folder} already holds files churnwise did not write ({shown}); it writes only into a new or "
            f"empty folder, or one it wrote before. Choose another folder for {key}"
        )


def record_files(folder: Path, names: Iterable[str], *, forget: Iterable[str] = ()) -> None:
    """Add `names` to the record of the files churnwise wrote in `folder` (and drop `forget`)."""
    files = (owned_files(folder) | set(names)) - set(forget)
    temp = folder / f".{RECORD}.tmp-{os.getpid()}"
    temp.write_text(json.dumps({"writer": "churnwise", "files": sorted(files)}, indent=2) + "\n")
    os.replace(temp, folder / RECORD)


def _failure(action: str, target: Path, error: BaseException) -> PublishError:
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
    if getattr(error, "errno", None) == errno.ENOSPC or "no space left" in str(error).lower():
        reason = "no space left on the device"
    return PublishError(
        f"cannot {action} {target}: {reason}. Nothing was published; the previous outputs are intact"
    )


def _write_failure(error: BaseException) -> bool:
    """Whether an error raised while writing a file is the file system's (full disk, permissions)."""
    return isinstance(error, OSError) or type(error).__name__ in ("IOException", "PermissionException")


class Publication:
    """Outputs staged beside their targets, swapped in together, kept revertible until `commit`.

    Use as a context manager: an exception inside it rolls every swapped file back; leaving it normally
    swaps what is not swapped yet and commits. With `replace_folder`, files churnwise wrote in that folder
    earlier and not written again are removed at commit (a report whose plots changed).
    """

    def __init__(self) -> None:
        self.staged: dict[Path, Path] = {}
        self.unrecorded: set[Path] = set()
        self.backups: dict[Path, Path] = {}
        self.swapped: list[Path] = []
        self.replaced_folders: set[Path] = set()
        self.done = False

    def __enter__(self) -> Publication:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.swap()
            self.commit()
        else:
            self.rollback()

    def stage(
        self, target: Path, write: Callable[[Path], object], key: str | None, *, replace_folder: bool = False
    ) -> None:
        """Write `target`'s new content beside it now, through `write(temp_path)`; nothing is replaced yet.

        `key` is the setting that chose the folder: the folder must be churnwise's (`check_can_write`), and the
        file is recorded as churnwise's. None: the caller guards the file itself (a generated file's marker)."""
        target = Path(target)
        if key is None:
            self.unrecorded.add(target)
        else:
            check_can_write(target.parent, [target.name], key)
        folder = target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_leftovers(folder, [target.name])
        except OSError as error:
            raise _failure("create the folder of", target, error) from None
        temp = folder / f".{target.name}.tmp-{os.getpid()}"
        self.staged[target] = temp
        if replace_folder:
            self.replaced_folders.add(folder)
        try:
            write(temp)
        except Exception as error:
            self.rollback()
            if _write_failure(error):
                raise _failure("write", target, error) from None
            raise

    def swap(self) -> None:
        """Move every staged file into place, keeping each previous file as a backup until `commit`."""
        try:
            for target, temp in self.staged.items():
                if target in self.swapped:
                    continue
                if target.exists():
                    backup = target.parent / f".{target.name}.bak-{os.getpid()}"
                    os.replace(target, backup)
                    self.backups[target] = backup
                os.replace(temp, target)
                self.swapped.append(target)
        except OSError as error:
            self.rollback()
            raise _failure("replace", target, error) from None

    def rollback(self) -> None:
        """Put every previous file back and remove what was staged."""
        if self.done:
            return
        # Swapped targets get their previous file back (or go, when there was none); a target whose previous
        # file was moved aside but whose new file never arrived gets it back too.
        for target in [*reversed(self.swapped), *(t for t in self.backups if t not in self.swapped)]:
            backup = self.backups.get(target)
            try:
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            except OSError as error:  # a second failure while undoing the first
                log.error("could not restore %s: %s", target, error)
        for temp in self.staged.values():
            temp.unlink(missing_ok=True)
        self.swapped.clear()
        self.done = True

    def commit(self) -> None:
        """Keep the new files: drop the backups, record the files as churnwise's, and remove its earlier files
        of a replaced folder that were not written again."""
        if self.done:
            return
        for backup in self.backups.values():
            backup.unlink(missing_ok=True)
        by_folder: dict[Path, set[str]] = {}
        for target in self.staged:
            if target not in self.unrecorded:
                by_folder.setdefault(target.parent, set()).add(target.name)
        for folder, names in by_folder.items():
            stale = owned_files(folder) - names - {RECORD} if folder in self.replaced_folders else set()
            for name in sorted(stale):
                path = folder / name
                if path.is_file() and not path.is_symlink():
                    path.unlink()
            try:
                record_files(folder, names, forget=stale)
            except OSError as error:
                log.warning("could not update the record of churnwise's files in %s: %s", folder, error)
        self.done = True


def publish_files(writers: Mapping[Path, Callable[[Path], object]], key: str | None) -> list[Path]:
    """Write several files together (see `Publication`): all or none of them replaced. Every file is written
    beside its target before any is renamed, so a crash or error while writing (the slow part) leaves every
    previous target untouched; temp files of killed runs are removed first."""
    with Publication() as publication:
        for target, write in writers.items():
            publication.stage(target, write, key)
    return list(writers)


def replace_file(write: Callable[[Path], object], target: Path, key: str | None) -> Path:
    """Write one file through `write(temp_path)` beside `target`, then rename it into place: a crash or error
    leaves any previous `target` untouched and no partial file behind."""
    return publish_files({target: write}, key)[0]


# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe_sql(column: str) -> str:
    """SQL for a text column written to CSV: a value starting like a formula gets a leading apostrophe."""
    name = identifier(column)
    return f"CASE WHEN left({name}, 1) IN {literal_list(FORMULA_START)} THEN '''' || {name} ELSE {name} END"


def spreadsheet_safe_frame(frame: Any) -> Any:
    """A DataFrame for CSV: text cells starting like a formula get a leading apostrophe (numbers unchanged)."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_START, na=False)
            if risky.any():
                out[column] = values.where(~risky.to_numpy(), "'" + text)
    return out


def csv_copy_sql(con: Any, relation: str, path: Path) -> str:
    """A DuckDB COPY of `relation` to a CSV file at `path`, its text columns spreadsheet-safe."""
    columns = []
    for name, kind, *_ in con.execute(f"DESCRIBE {identifier(relation)}").fetchall():
        columns.append(
            f"{spreadsheet_safe_sql(name)} AS {identifier(name)}" if kind == "VARCHAR" else identifier(name)
        )
    return f"COPY (SELECT {', '.join(columns)} FROM {identifier(relation)}) TO {literal(path)} (FORMAT csv, HEADER)"


class HistoryTable:
    """A table in a DuckDB database file that keeps every run's rows, one as_of replaced at a time.

    `check` refuses, before anything is published, a table of earlier runs whose columns or types differ;
    a table lacking only some of the `addable` columns (ones added to the output since it was written) is
    accepted, and `replacing` adds them (nullable: earlier rows hold NULL) in its transaction. `replacing`
    deletes and inserts one date's rows in a transaction that commits when its block ends and rolls back
    when the block raises. The database is attached under one alias for the whole run, so a second job
    writing the same file at the same time is refused at once.
    """

    ALIAS = "churnwise_history"

    def __init__(
        self, con: Any, database: Path, table: str, key: str = "score.table", addable: Iterable[str] = ()
    ) -> None:
        self.con, self.database, self.table, self.key = con, Path(database), str(table), key
        self.addable = tuple(addable)
        self.attached = False
        self.created = False

    @property
    def name(self) -> str:
        """The history table, qualified by the attached database's alias."""
        return qualified(self.ALIAS, self.table)

    def attach(self) -> None:
        """Attach the database (creating it when missing), or ConfigError saying why it cannot be used."""
        if self.attached:
            return
        if self.database.is_dir():
            raise ConfigError(f"score.database: {self.database} is a folder, not a DuckDB database file")
        self.created = not self.database.exists()
        try:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            self.con.execute(f"ATTACH {literal(self.database)} AS {identifier(self.ALIAS)}")
        except (duckdb.Error, OSError) as error:
            first = str(error).strip().splitlines()[0]
            reason = (
                "another process has it open (a scoring job still running?)"
                if "lock" in first.lower()
                else "it is not a DuckDB database this version can open, or cannot be written"
            )
            raise ConfigError(f"score.database {self.database}: {reason} ({first})") from None
        self.attached = True

    def columns(self, relation: str) -> list[tuple[str, str]]:
        """(column, type) of a relation on the connection."""
        return [(r[0], str(r[1])) for r in self.con.execute(f"DESCRIBE {relation}").fetchall()]

    def exists(self) -> bool:
        """Whether the history table is there already."""
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [self.ALIAS, self.table],
        ).fetchall()[0][0]
        return bool(found)

    def check(self, source: str) -> None:
        """The history table, if it exists, must have exactly the columns and types of `source`."""
        self.attach()
        if not self.exists():
            return
        have = dict(self.columns(self.name))
        new = dict(self.columns(identifier(source)))
        problems = [
            f"{c} is {have[c]} there and {t} now" for c, t in new.items() if c in have and have[c] != t
        ]
        missing = sorted(set(new) - set(have) - set(self.addable))
        extra = sorted(set(have) - set(new))
        if missing:
            problems.append(f"it lacks {', '.join(missing)}")
        if extra:
            problems.append(f"it has {', '.join(extra)}, which this output does not")
        if problems:
            raise ConfigError(
                f"{self.key}: the history table {self.table} in {self.database} was written by runs of another "
                f"shape ({'; '.join(problems)}); nothing was published. Keep this data's history apart with "
                f"{self.key}=<another name>, or move the database away"
            )

    @contextlib.contextmanager
    def replacing(self, source: str, date_column: str, as_of: Any) -> Iterator[None]:
        """Replace the rows of `as_of` with `source`'s in one transaction, committed when the block ends."""
        self.attach()
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(
                f"CREATE TABLE IF NOT EXISTS {self.name} AS SELECT * FROM {identifier(source)} LIMIT 0"
            )
            have = {c for c, _ in self.columns(self.name)}
            for column, kind in self.columns(identifier(source)):
                if column in self.addable and column not in have:
                    self.con.execute(f"ALTER TABLE {self.name} ADD COLUMN {identifier(column)} {kind}")
                    log.info("history table %s: added column %s (earlier runs hold NULL)", self.table, column)
            self.con.execute(f"DELETE FROM {self.name} WHERE {identifier(date_column)} = {literal(as_of)}")
            self.con.execute(f"INSERT INTO {self.name} BY NAME SELECT * FROM {identifier(source)}")
            yield
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def detach(self, *, failed: bool = False) -> None:
        """Detach the database; a database file this run created and never committed to is removed."""
        if not self.attached:
            return
        self.con.execute(f"DETACH {identifier(self.ALIAS)}")
        self.attached = False
        if failed and self.created:
            for path in (self.database, self.database.with_name(self.database.name + ".wal")):
                path.unlink(missing_ok=True)


def remove_written(root: Path) -> list[Path]:
    """Remove, under `root`, every file churnwise wrote (listed in a folder's record, or a generated file's
    `.generated.json` marker beside it) and the folders that are left empty; nothing else. Returns what was
    removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for record in sorted(root.rglob(RECORD), key=lambda p: len(p.parts), reverse=True):
        folder = record.parent
        for name in sorted(owned_files(folder)):
            path = folder / name
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        record.unlink()
        removed.append(record)
    for marker in sorted(root.rglob("*.generated.json")):
        target = marker.with_name(marker.name.removesuffix(".generated.json"))
        for path in (target, target.with_name(f"{target.stem}_to_score.csv"), marker):
            if path.is_file():
                path.unlink()
                removed.append(path)
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed
