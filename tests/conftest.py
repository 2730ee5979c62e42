"""Shared fixtures: a real, throw-away PostgreSQL server, and a ``db_url`` that runs a test on both back-ends.

The server is started once per test session from the PostgreSQL binaries when they are installed (Debian's
``postgresql`` package puts them under /usr/lib/postgresql/<ver>/bin) and stopped afterwards; tests that need
it are skipped, with the reason, when the binaries are absent. ``INFERPERF_TEST_PG_URL`` points the tests at
an existing server instead (a CI service container): each test still gets a database of its own.

initdb refuses to run as root, so as root the cluster is created and run as the ``postgres`` OS user (or
``nobody``) inside a temporary directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL_ENV = "INFERPERF_TEST_PG_URL"


def _pg_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres: on PATH, else the newest Debian/RPM install."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates = [Path(p) for p in Path("/usr/lib/postgresql").glob("*/bin")]
    candidates += [Path(p) for p in Path("/usr").glob("pgsql-*/bin")]
    candidates += [Path("/usr/local/pgsql/bin")]
    for bindir in sorted(candidates, key=version, reverse=True):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """How to run a server command: directly, or (as root) as an unprivileged user."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user
        return ["su", name, "-s", "/bin/sh", "-c"], user
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _run(prefix: list[str], cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = [*prefix, shlex.join(cmd)] if prefix[:1] == ["su"] else [*prefix, *cmd]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    return subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """SQLAlchemy URL of the maintenance database of a running PostgreSQL server (superuser, trust auth)."""
    external = os.environ.get(PG_URL_ENV)
    if external:
        yield external
        return
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the psycopg driver (inferperf[postgres])")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    prefix, user = _as_user_prefix()
    base = Path(tempfile.mkdtemp(prefix="inferperf-pg-", dir="/tmp"))
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    data, log, port = base / "data", base / "server.log", _free_port()
    started = False
    try:
        init = _run(
            prefix,
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            base,
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        # durability settings off: the cluster is thrown away after the session
        options = (
            f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=60 -c shared_buffers=32MB"
        )
        start = _run(
            prefix,
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
            base,
        )
        if start.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{tail}")
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run(prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_test_database(postgres_server: str) -> str:
    """URL of the database the tests work in: a fresh one on the spawned server, the given one otherwise."""
    if os.environ.get(PG_URL_ENV):
        return postgres_server
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_server)
    with psycopg.connect(_conninfo(postgres_server), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "inferperf_test"')
    return admin.set(database="inferperf_test").render_as_string(hide_password=False)


def _conninfo(url: str) -> str:
    """A libpq URI for psycopg from a SQLAlchemy URL (which names its driver)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", query={}).render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_test_database: str) -> Iterator[str]:
    """An empty PostgreSQL schema for one test, dropped afterwards.

    A schema (selected through the connection's ``search_path``) rather than a database per test: creating
    a database copies a template and costs 0.1-0.5 s, a schema costs nothing, and to inferperf an empty
    schema is exactly an empty database — migrations, version table and all.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(pg_test_database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(pg_test_database).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_conninfo(pg_test_database), autocommit=True) as conn:
            # end the test's leftover sessions (a killed child's backend) so the drop cannot block
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() AND application_name = 'inferperf'"
            )
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'perf.db'}"
    return request.getfixturevalue("pg_url")
