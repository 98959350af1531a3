"""A real PostgreSQL server on loopback for the tests, from Debian's `postgresql` package.

Installed with apt-get when missing (CI runs as root); the tests that need it skip, saying
why, only where it cannot be had. The server runs from a scratch directory on a free port
and is stopped at the end of the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .debian import apt_install


def _binaries() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: use its own system user, as Debian sets it up.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _has_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The base URL (no database) of a running PostgreSQL server."""
    binaries = _binaries()
    if binaries is None or (os.geteuid() == 0 and not _has_postgres_user()):
        reason = apt_install("postgresql")
        binaries = _binaries()
        if binaries is None or (os.geteuid() == 0 and not _has_postgres_user()):
            pytest.skip(reason or "PostgreSQL (or its system user) could not be found after installing it")
    data = Path(tempfile.mkdtemp(prefix="luma-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(tool: str, *args: str, check: bool = True) -> None:
        command = _as_postgres_user([str(binaries / tool), "-D", str(data / "db"), *args])
        subprocess.run(command, check=check, capture_output=True, timeout=120)

    run("initdb", "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {data} -h 127.0.0.1 -c fsync=off -c max_connections=200"
    run("pg_ctl", "-o", options, "-w", "-l", str(data / "log"), "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run("pg_ctl", "-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = f"luma_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{server_url}/{name}"
