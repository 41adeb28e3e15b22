"""A real PostgreSQL server for tests: initdb into a temporary directory, pg_ctl start, stop at the end.

Import the fixtures into a test module (``from postgres import postgres_server,
postgres_url``). The server listens on a free loopback port with trust
authentication and durability switched off (fsync, synchronous commit):
nothing here must survive a crash, and it makes the tests fast. As root it
runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
When PostgreSQL is not installed the tests fail, they are not skipped:
``.ci/postgres.sh`` installs it (Debian's ``postgresql`` package).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

USER = "spendwatch"
_counter = itertools.count()


@dataclass(frozen=True)
class PostgresServer:
    port: int
    bindir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        name = f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl, or a failure that says how to install them."""
    candidates = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    pytest.fail(
        "PostgreSQL is not installed: no pg_ctl/initdb on PATH or in /usr/lib/postgresql/*/bin. "
        "Install it with .ci/postgres.sh (apt-get install -y postgresql); the history tests need a real server.",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="spendwatch-pg-"))
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-instructions"])
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off " \
              "-c full_page_writes=off"
    _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
    try:
        yield PostgresServer(port, bindir)
    finally:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres_server.create_database()
