"""A real, throw-away PostgreSQL server for tests (Debian's binaries under /usr/lib/postgresql/*/bin).

Use it from a test module with `pytest_plugins = ["postgres_server"]` (one server for the whole session,
however many modules ask for it) and a `postgres_server: str` argument, or call `running_postgres()` directly.
The server listens only on 127.0.0.1 (free port) and on a socket inside its own temporary folder, trusts local
connections, and is always stopped and deleted afterwards. initdb refuses to run as root, so as root the
binaries run as the `postgres` user through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE = "churnwise"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
INSTALL_HINT = "run `make postgres` (installs Debian's postgresql with apt)"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the user to run them as) are missing."""


def postgres_bin() -> Path:
    """The newest installed PostgreSQL `bin` folder holding initdb and pg_ctl."""
    found = [
        folder
        for folder in Path("/").glob(BIN_GLOB.lstrip("/"))
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()
    ]
    if not found:
        raise PostgresUnavailable(f"no PostgreSQL server binaries under {BIN_GLOB}: {INSTALL_HINT}")

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name))

    return max(found, key=version)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user() -> list[str]:
    """Command prefix that runs the server binaries as a non-root user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root but there is no '{SUPERUSER}' user: {INSTALL_HINT}"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable(
            "running as root, and `runuser` (util-linux) is missing to drop to 'postgres'"
        )
    return [runuser, "-u", SUPERUSER, "--"]


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a fresh PostgreSQL server with an empty database `churnwise`; yield its URI; stop and delete it.

    The folder is made in the system temp directory (not pytest's, which is private to its owner and so
    unreachable by the `postgres` user when running as root).
    """
    bin_dir = postgres_bin()
    prefix = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="churnwise-pg-"))
    data, sockets, logfile = folder / "data", folder / "sockets", folder / "server.log"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "--pgdata", str(data)]
    started = False
    try:
        sockets.mkdir()
        if prefix:
            account = pwd.getpwnam(SUPERUSER)
            for path in (folder, sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        _run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=folder,
        )
        port = free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{sockets}'",
            "fsync": "off",  # a throw-away server: durability is not needed, speed is
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": "'America/New_York'",  # not UTC, so a test catches time-zone mistakes
        }
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        started = True
        try:
            _run(
                [*pg_ctl, "--log", str(logfile), "--wait", "--timeout", str(START_TIMEOUT_S), "start"],
                cwd=folder,
            )
        except RuntimeError as err:
            log_text = logfile.read_text(errors="replace") if logfile.exists() else "(no server log)"
            raise RuntimeError(f"{err}\nserver log:\n{log_text}") from None
        with psycopg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            try:
                _run([*pg_ctl, "--mode", "fast", "--wait", "stop"], cwd=folder)
            except RuntimeError:
                # Not running (start failed) or not stopping: make sure nothing is left behind.
                with contextlib.suppress(RuntimeError):
                    _run([*pg_ctl, "--mode", "immediate", "--wait", "stop"], cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URI of a real PostgreSQL server (database `churnwise`) shared by the whole test session."""
    try:
        postgres_bin()
        _as_server_user()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    with running_postgres() as uri:
        yield uri
