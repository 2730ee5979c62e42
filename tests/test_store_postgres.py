"""PerfDB on PostgreSQL specifically: driver selection, connection errors, JSONB, contention, reconnects.

The back-end-independent behaviour is tested on PostgreSQL too, through ``db_url`` in test_store.py; this
file covers what only a server shows. It needs the PostgreSQL binaries (see conftest.py) and skips without.
"""

from __future__ import annotations

import hashlib
import socket
import threading

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from inferperf.errors import StoreError
from inferperf.store.db import PerfDB

pytestmark = pytest.mark.postgres
pytest.importorskip("psycopg", reason="PostgreSQL tests need the psycopg driver (inferperf[postgres])")

DEVICE = {"id": "fp-pg", "name": "cpu-pg", "kind": "cpu"}


def _h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def test_plain_postgresql_url_gets_the_psycopg_driver(pg_url: str) -> None:
    plain = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    assert plain.startswith("postgresql://")
    with PerfDB.open(plain) as db:
        assert db.dialect == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
        assert db.find_model(db.add_model("m", _h("m")))["version"] == 1


def test_unreachable_server_is_one_line_without_the_password() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as err:
        PerfDB.open(f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/perf")
    message = str(err.value)
    assert message.startswith("cannot open the performance database postgresql+psycopg://alice:***@")
    assert "s3cret-pw" not in message and "\n" not in message
    assert "refused" in message.lower()


def test_missing_database_is_reported(pg_url: str) -> None:
    missing = make_url(pg_url).set(database="no_such_db_here").render_as_string(hide_password=False)
    with pytest.raises(StoreError, match='database "no_such_db_here" does not exist'):
        PerfDB.open(missing)


def test_json_columns_are_jsonb_and_queryable(pg_url: str) -> None:
    with PerfDB.open(pg_url) as db:
        model = db.add_model("m", _h("m"))
        dev = db.upsert_device(DEVICE)
        run = {"config": {"runtime": "onnxruntime", "batch_size": 4}, "status": "ok",
               "provenance": {"seed": 7}, "samples_ms": [1.0, 2.0]}
        db.add_run(run, model, dev)
        with db.engine.connect() as conn:
            columns = {c["name"]: c["type"] for c in inspect(conn).get_columns("runs")}
            # JSONB operators work server-side on what the store wrote
            seed = conn.execute(text("SELECT provenance->>'seed' FROM runs")).scalar_one()
            batch = conn.execute(text("SELECT (config->>'batch_size')::int FROM runs")).scalar_one()
            # a run without samples has SQL NULL, not the JSON literal null
            db.add_run({**run, "samples_ms": None}, model, dev)
            nulls = conn.execute(text("SELECT count(*) FROM runs WHERE samples IS NULL")).scalar_one()
    assert type(columns["config"]).__name__ == "JSONB" and type(columns["samples"]).__name__ == "JSONB"
    assert (seed, batch, nulls) == ("7", 4, 1)


def test_same_name_models_from_racing_writers_get_distinct_versions(pg_url: str) -> None:
    PerfDB.open(pg_url).close()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(w: int) -> None:
        try:
            with PerfDB.open(pg_url) as db:
                barrier.wait()
                for i in range(5):
                    db.add_model("contended", _h(f"{w}-{i}"))
                    db.add_model("contended", _h("shared"))  # the same bytes from everyone: one row
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PerfDB.open(pg_url) as db:
        versions = [m["version"] for m in db.list_models(name="contended")]
        assert versions == list(range(1, 22))  # 20 distinct files + the shared one, no gaps, no duplicates


def test_store_survives_a_server_side_disconnect(pg_url: str, postgres_server: str) -> None:
    import psycopg

    with PerfDB.open(pg_url) as db:
        dev = db.upsert_device(DEVICE)
        dbname = make_url(pg_url).database
        admin = make_url(postgres_server).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchone()[0]
        assert killed >= 1  # the pooled connection really was cut
        assert db.get_device(dev)["name"] == "cpu-pg"  # pre-ping replaced it transparently
