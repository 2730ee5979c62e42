"""PerfDB: the performance database API.

One class, :class:`PerfDB`, is the only way the rest of inferperf reads or writes measurements. It hides
the two back-ends (SQLite by default, PostgreSQL by URL) behind plain-dict methods, so callers never touch
SQLAlchemy sessions and the schema can evolve behind migrations.

Guarantees the callers rely on:

* a run and its kernels and fusion edges are written in one transaction: a process killed mid-insert
  leaves the whole run or nothing;
* re-running a configuration appends a run, never overwrites one;
* opening a database migrates it to the current schema, safely when several processes open it at once;
* every database problem a user can cause (unreachable server, corrupt file, unknown id) is a
  :class:`~inferperf.errors.StoreError` with one readable line.

SQLite is opened in WAL mode (readers never block the writer), with foreign keys enforced and a busy
timeout; write transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of
failing with "database is locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, undefer

from inferperf.errors import StoreError
from inferperf.store import migrate
from inferperf.store.paths import model_file_path, resolve_db_url
from inferperf.store.records import (
    device_to_dict,
    environment_id,
    environment_to_dict,
    fusion_rows,
    fusion_to_dict,
    json_safe,
    kernel_rows,
    kernel_to_dict,
    model_to_dict,
    run_columns,
    run_to_dict,
)
from inferperf.store.schema import Device, Environment, FusionEdge, Kernel, Model, Run, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.sql import Select

T = TypeVar("T")

#: how long a writer waits for another writer's lock before giving up (SQLite)
BUSY_TIMEOUT_S = 60.0
#: how long to wait for a PostgreSQL server to accept the connection
CONNECT_TIMEOUT_S = 10


# ------------------------------------------------------------------------------------------- engine
def _json_dumps(obj: Any) -> str:
    # allow_nan=False: a NaN that slipped past json_safe must fail loudly, not write invalid JSON
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def _sqlite_path(url: URL) -> Path | None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def create_store_engine(url: str) -> Engine:
    """A SQLAlchemy engine configured for the performance database (no connection is made yet)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"'{url}' is not a database URL (expected sqlite:///PATH or postgresql://...)") from exc
    backend = u.get_backend_name()
    try:
        if backend == "sqlite":
            path = _sqlite_path(u)
            if path is not None:
                try:
                    path.expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the directory for {path}: {exc.strerror}") from exc
            kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
            if path is None and not (u.database or "").startswith("file:"):
                # one private in-memory database, shared by every checkout of this engine
                kwargs = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
            engine = create_engine(u, json_serializer=_json_dumps, **kwargs)
            _configure_sqlite(engine, wal=path is not None)
        elif backend == "postgresql":
            if u.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2, which is not shipped
                u = u.set(drivername="postgresql+psycopg")
            engine = create_engine(
                u,
                json_serializer=_json_dumps,
                pool_pre_ping=True,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "inferperf"},
            )
        else:
            raise StoreError(f"unsupported database '{backend}': use SQLite (a path) or PostgreSQL")
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no driver for {u.drivername}: install the PostgreSQL extra (pip install 'inferperf[postgres]')"
        ) from exc
    return engine


def _configure_sqlite(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # take transaction control away from the sqlite3 module: it does not BEGIN before DDL or SELECT,
        # which would make migrations non-transactional and reads non-repeatable
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if wal:
                _set_wal(cur)
                # in WAL mode NORMAL never corrupts; a power cut may lose the last commits, a killed process
                # loses nothing that was committed
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _set_wal(cur: Any) -> None:
    """Switch a connection to WAL, waiting out a concurrent first open.

    Why a loop: changing the journal mode needs the database to itself, and SQLite can answer "database is
    locked" at once — without the busy handler — when another connection is creating or migrating the same new
    file. Four threads opening a fresh PerfDB together failed this way once in a full test run under load (not
    reproduced in 30 loaded runs since, so this is the likely cause, not a proven one).
    """
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _describe(exc: BaseException) -> str:
    """The first meaningful line of a driver error, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None) or exc
    for line in str(orig).splitlines():
        line = line.strip()
        if line and not line.startswith("(Background on this error"):
            return line
    return type(orig).__name__


def display_url(url: str) -> str:
    """The URL with its password masked, for messages and listings."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


def _lock_key(*parts: str) -> int:
    """A signed 64-bit PostgreSQL advisory-lock key derived from a name."""
    digest = hashlib.sha256("\x00".join(("inferperf", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


# --------------------------------------------------------------------------------------------- PerfDB
class PerfDB:
    """The performance database. Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        self.url = url

    # ------------------------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = True) -> PerfDB:
        """Open (and by default migrate to the newest schema) the database at ``url``.

        ``None`` is ``$INFERPERF_DB`` or ``$INFERPERF_HOME/perf.db``; a bare path is a SQLite file.
        ``upgrade=False`` only checks that the database is reachable (for ``db current``).
        """
        resolved = resolve_db_url(url)
        engine = create_store_engine(resolved)
        try:
            if upgrade:
                migrate.upgrade(engine)
            else:
                with engine.connect() as conn:
                    migrate.current_revision(conn)
        except StoreError:
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            reason = _describe(exc)
            if "file is not a database" in reason or "malformed" in reason:
                raise StoreError(f"{display_url(resolved)} is not a valid SQLite database ({reason})") from exc
            raise StoreError(f"cannot open the performance database {display_url(resolved)}: {reason}") from exc
        return cls(engine, resolved)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> PerfDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PerfDB({display_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for analysis code that wants SQL (pandas.read_sql); read-only use."""
        return self._engine

    def schema_revision(self) -> tuple[str | None, str]:
        """(revision the database is at, newest revision this inferperf knows)."""

        def read() -> tuple[str | None, str]:
            with self._engine.connect() as conn:
                return migrate.current_revision(conn), migrate.head_revision()

        return self._guard("read the schema revision", read)

    def upgrade(self) -> str:
        """Migrate to the newest schema; returns the revision."""
        return self._guard("upgrade the schema", lambda: migrate.upgrade(self._engine))

    # ------------------------------------------------------------------------------- sessions
    @contextmanager
    def _read(self, action: str) -> Iterator[Session]:
        try:
            # closing (not rolling back) ends the read transaction without expiring the loaded objects
            with Session(self._engine, expire_on_commit=False) as session:
                yield session
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {action}: {_describe(exc)}") from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[Session]:
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {action}: {_describe(exc)}") from exc

    def _guard(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {action}: {_describe(exc)}") from exc

    def _upsert(self, table: Any, row: dict[str, Any], update_cols: Iterable[str] = ()) -> Any:
        """INSERT .. ON CONFLICT (id) DO UPDATE/NOTHING, in the dialect's own syntax (race-free)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(table).values(**row)
        cols = list(update_cols)
        if cols:
            return stmt.on_conflict_do_update(index_elements=["id"], set_={c: stmt.excluded[c] for c in cols})
        return stmt.on_conflict_do_nothing(index_elements=["id"])

    # ------------------------------------------------------------------------------- devices, environments
    def upsert_device(self, descriptor: Mapping[str, Any]) -> str:
        """Record a device and return its id; later calls refresh its descriptor.

        The id is the descriptor's ``id``, or its ``fingerprint`` (``DeviceDescriptor.to_dict()`` has no
        separate id); the whole descriptor is kept as JSON.
        """
        dev_id = (descriptor.get("id") or descriptor.get("fingerprint")) if isinstance(descriptor, Mapping) else None
        if not dev_id:
            raise StoreError("a device descriptor must be a dict with a non-empty 'id' or 'fingerprint'")
        dev_id = str(dev_id)
        now = utcnow()
        row = {
            "id": dev_id,
            "name": str(descriptor.get("name") or dev_id),
            "kind": str(descriptor.get("kind") or "unknown"),
            "descriptor": json_safe(descriptor),
            "first_seen": now,
            "last_seen": now,
        }
        with self._write("record the device") as s:
            s.execute(self._upsert(Device, row, ("name", "kind", "descriptor", "last_seen")))
        return dev_id

    def get_device(self, device_id: str) -> dict[str, Any]:
        with self._read("read the device") as s:
            dev = s.get(Device, device_id)
            if dev is None:
                raise StoreError(f"no device with id '{device_id}'")
            return device_to_dict(dev)

    def list_devices(self) -> list[dict[str, Any]]:
        with self._read("list devices") as s:
            return [device_to_dict(d) for d in s.scalars(select(Device).order_by(Device.first_seen))]

    def upsert_environment(self, env: Mapping[str, Any]) -> str:
        """Record a software environment and return its id (the hash of its JSON unless it has an ``id``)."""
        if not isinstance(env, Mapping):
            raise StoreError("an environment must be a dict of library versions")
        env_id = str(env.get("id") or environment_id(env))
        versions = json_safe({k: v for k, v in env.items() if k != "id"})

        def field(*keys: str) -> str | None:
            for k in keys:
                if env.get(k) is not None:
                    return str(env[k])[:256]
            return None

        row = {
            "id": env_id,
            "python": field("python"),
            "os": field("os", "platform", "system"),
            "kernel": field("kernel", "os_kernel", "release"),
            "versions": versions,
            "first_seen": utcnow(),
        }
        with self._write("record the environment") as s:
            s.execute(self._upsert(Environment, row))
        return env_id

    def get_environment(self, env_id: str) -> dict[str, Any]:
        with self._read("read the environment") as s:
            env = s.get(Environment, env_id)
            if env is None:
                raise StoreError(f"no environment with id '{env_id}'")
            return environment_to_dict(env)

    # ------------------------------------------------------------------------------- models
    def add_model(
        self,
        name: str,
        content_hash: str,
        family: str | None = None,
        framework: str | None = None,
        source: str | None = None,
        tags: Iterable[str] = (),
        input_spec: Any = None,
        graph_summary: Mapping[str, Any] | None = None,
        file_path: str | Path | None = None,
    ) -> int:
        """Register a model version and return its id.

        Same name and bytes as an existing row: that row (restored if it was soft-deleted). Same name, new
        bytes: the next version. ``file_path`` defaults to the content-addressed copy when one is stored.
        """
        if not name or not str(name).strip():
            raise StoreError("a model needs a name")
        name = str(name).strip()
        content_hash = str(content_hash).lower()
        path = model_file_path(content_hash)  # also validates the hash
        if file_path is None and path.is_file():
            file_path = path
        tag_list = sorted({str(t) for t in tags}) if not isinstance(tags, str) else [tags]

        def attempt() -> int:
            with self._write("add the model") as s:
                if self.dialect == "postgresql":  # serialise writers of this name (SQLite: BEGIN IMMEDIATE)
                    s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("model", name)})
                existing = s.scalars(
                    select(Model).where(Model.name == name, Model.content_hash == content_hash)
                ).first()
                if existing is not None:
                    if existing.deleted:
                        existing.deleted = False
                    return existing.id
                latest = s.scalar(select(func.max(Model.version)).where(Model.name == name))
                model = Model(
                    name=name,
                    content_hash=content_hash,
                    version=(latest or 0) + 1,
                    family=family,
                    framework=framework,
                    source=None if source is None else str(source),
                    tags=tag_list,
                    input_spec=json_safe(input_spec),
                    graph_summary=json_safe(graph_summary),
                    file_path=None if file_path is None else str(file_path),
                    created_at=utcnow(),
                    deleted=False,
                )
                s.add(model)
                s.flush()
                return model.id

        # the lock above makes same-name races impossible; a retry still covers a server that lost the
        # lock (e.g. a pooler in transaction mode) and let two writers collide on the unique constraints
        for _ in range(4):
            try:
                return attempt()
            except StoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
                last = exc
        raise last

    def find_model(
        self,
        model_id: int | None = None,
        *,
        name: str | None = None,
        version: int | None = None,
        content_hash: str | None = None,
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        """The model matching all given criteria (the newest version when several do), or None."""
        stmt = select(Model)
        if model_id is not None:
            stmt = stmt.where(Model.id == int(model_id))
        if name is not None:
            stmt = stmt.where(Model.name == name)
        if version is not None:
            stmt = stmt.where(Model.version == int(version))
        if content_hash is not None:
            h = content_hash.lower()
            stmt = stmt.where(Model.content_hash == h if len(h) == 64 else Model.content_hash.startswith(h))
        if not include_deleted:
            stmt = stmt.where(Model.deleted.is_(False))
        stmt = stmt.order_by(Model.version.desc(), Model.id.desc()).limit(1)
        with self._read("find the model") as s:
            model = s.scalars(stmt).first()
            return model_to_dict(model) if model is not None else None

    def resolve_model(self, ref: int | str, include_deleted: bool = False) -> dict[str, Any]:
        """A model from what a user types: an id, ``name`` (newest version), ``name:VERSION``, or a
        content-hash prefix of at least 8 hex digits. Raises StoreError when nothing or several match."""
        ref_text = str(ref).strip()
        if isinstance(ref, int) or ref_text.isdigit():
            found = self.find_model(int(ref_text), include_deleted=include_deleted)
        elif ":" in ref_text and ref_text.rsplit(":", 1)[1].isdigit():
            name, ver = ref_text.rsplit(":", 1)
            found = self.find_model(name=name, version=int(ver), include_deleted=include_deleted)
        else:
            found = self.find_model(name=ref_text, include_deleted=include_deleted)
            if found is None and len(ref_text) >= 8 and all(c in "0123456789abcdef" for c in ref_text.lower()):
                with self._read("find the model") as s:
                    stmt = select(Model).where(Model.content_hash.startswith(ref_text.lower()))
                    if not include_deleted:
                        stmt = stmt.where(Model.deleted.is_(False))
                    matches = list(s.scalars(stmt.order_by(Model.id).limit(5)))
                if len(matches) > 1:
                    names = ", ".join(f"{m.name}:{m.version}" for m in matches)
                    raise StoreError(f"content hash prefix '{ref_text}' matches several models ({names})")
                found = model_to_dict(matches[0]) if matches else None
        if found is None:
            raise StoreError(f"no model '{ref_text}' in the database")
        return found

    def list_models(
        self,
        name: str | None = None,
        family: str | None = None,
        tag: str | None = None,
        include_deleted: bool = False,
        latest_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Models ordered by name and version, each with ``n_runs``."""
        stmt = select(Model).order_by(Model.name, Model.version)
        if name is not None:
            stmt = stmt.where(Model.name == name)
        if family is not None:
            stmt = stmt.where(Model.family == family)
        if not include_deleted:
            stmt = stmt.where(Model.deleted.is_(False))
        with self._read("list models") as s:
            models = list(s.scalars(stmt))
            counts = dict(s.execute(select(Run.model_id, func.count()).group_by(Run.model_id)).all())
        if tag is not None:  # tags are a JSON list: filtered here, portable across back-ends
            models = [m for m in models if tag in (m.tags or [])]
        if latest_only:
            newest: dict[str, Model] = {}
            for m in models:
                newest[m.name] = m  # ordered by version, so the last one wins
            models = list(newest.values())
        return [model_to_dict(m, counts.get(m.id, 0)) for m in models]

    def update_model(
        self,
        model_id: int,
        *,
        family: str | None = None,
        framework: str | None = None,
        source: str | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Edit a model's descriptive metadata in one transaction and return the updated row.

        Name, version, content hash and file never change: they are the model's identity and its runs'
        provenance. An empty string clears ``family`` / ``framework`` / ``source``.
        """
        add, remove = [str(t) for t in add_tags], {str(t) for t in remove_tags}
        with self._write("update the model") as s:
            model = s.get(Model, int(model_id))
            if model is None:
                raise StoreError(f"no model with id {model_id}")
            if family is not None:
                model.family = family or None
            if framework is not None:
                model.framework = framework or None
            if source is not None:
                model.source = source or None
            if add or remove:
                model.tags = sorted((set(model.tags or []) | set(add)) - remove)  # a new list: change tracked
            s.flush()
            return model_to_dict(model)

    def soft_delete_model(self, model_id: int, force: bool = False) -> None:
        """Hide a model from listings. Its runs stay (their provenance needs it); refused without ``force``
        when runs exist, so measurements are not hidden by accident."""
        with self._write("delete the model") as s:
            model = s.get(Model, int(model_id))
            if model is None:
                raise StoreError(f"no model with id {model_id}")
            n_runs = s.scalar(select(func.count()).select_from(Run).where(Run.model_id == model.id)) or 0
            if n_runs and not force:
                raise StoreError(
                    f"model {model.name} v{model.version} has {n_runs} run(s); use force to delete it anyway "
                    "(the runs are kept)"
                )
            model.deleted = True

    # ------------------------------------------------------------------------------- runs
    def add_run(
        self,
        run: Mapping[str, Any],
        model_id: int,
        device_id: str,
        environment_id: str | None = None,
        kind: str = "bench",
        config_key: str | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """Store a measurement (``Measurement.to_dict()``) with its kernels and fusion edges; returns the run id.

        ``created_at`` is when the run was measured (default: now); an imported run passes its original time,
        because the order and hour of measurement are what label-drift analyses read.

        The record is validated before the transaction starts, and the run row, kernels and edges are
        committed together or not at all. The run's ``config_key`` (what :meth:`done_config_keys` returns)
        is, in order: the ``config_key`` argument, ``run["config"]["key"]``, or a hash of the config dict —
        a collector that resumes by its own key (``RunConfig.key()``) must pass it one of the first two ways.
        """
        cols = run_columns(run)
        if config_key is not None:
            cols["config_key"] = str(config_key)
        kernels = kernel_rows(run.get("kernels"))
        edges = fusion_rows(run.get("fusion_edges"))
        with self._write("store the run") as s:
            if s.get(Model, int(model_id)) is None:
                raise StoreError(f"no model with id {model_id}")
            if s.get(Device, str(device_id)) is None:
                raise StoreError(f"no device with id '{device_id}'; call upsert_device first")
            if environment_id is not None and s.get(Environment, str(environment_id)) is None:
                raise StoreError(f"no environment with id '{environment_id}'; call upsert_environment first")
            row = Run(
                model_id=int(model_id),
                device_id=str(device_id),
                environment_id=None if environment_id is None else str(environment_id),
                kind=str(kind),
                created_at=utcnow() if created_at is None else created_at,
                n_kernels=None if run.get("kernels") is None else len(kernels),
                n_fusion_edges=None if run.get("fusion_edges") is None else len(edges),
                **cols,
            )
            s.add(row)
            s.flush()
            if kernels:
                s.execute(insert(Kernel), [{"run_id": row.id, **k} for k in kernels])
            if edges:
                s.execute(insert(FusionEdge), [{"run_id": row.id, **e} for e in edges])
            return row.id

    def _runs_query(
        self,
        model: int | str | None = None,
        device: str | None = None,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
        runtime: str | None = None,
        valid: bool | None = None,
        include_deleted_models: bool = True,
    ) -> Select[tuple[Run, Model, Device]]:
        stmt = select(Run, Model, Device).join(Model, Run.model_id == Model.id).join(
            Device, Run.device_id == Device.id
        )
        if isinstance(model, int):
            stmt = stmt.where(Run.model_id == model)
        elif model is not None:
            name, _, ver = model.rpartition(":")
            if name and ver.isdigit():
                stmt = stmt.where(Model.name == name, Model.version == int(ver))
            else:
                stmt = stmt.where(Model.name == model)
        if device is not None:
            stmt = stmt.where((Device.id == device) | (Device.name == device))
        statuses = _as_list(status)
        if statuses is not None:
            stmt = stmt.where(Run.status.in_(statuses))
        if kind is not None:
            stmt = stmt.where(Run.kind == kind)
        if runtime is not None:
            stmt = stmt.where(Run.runtime == runtime)
        if valid is not None:
            stmt = stmt.where(Run.valid.is_(valid))
        if not include_deleted_models:
            stmt = stmt.where(Model.deleted.is_(False))
        return stmt

    def _attach_details(
        self, s: Session, out: dict[int, dict[str, Any]], with_kernels: bool, samples: dict[int, Any] | None
    ) -> None:
        if samples is not None:
            for run_id, d in out.items():
                d["samples_ms"] = samples.get(run_id)
        if not with_kernels or not out:
            return
        ids = list(out)
        for d in out.values():  # None: not profiled, as in the measurement record
            d["kernels"] = None if d["n_kernels"] is None else []
            d["fusion_edges"] = None if d["n_fusion_edges"] is None else []
        for k in s.scalars(select(Kernel).where(Kernel.run_id.in_(ids)).order_by(Kernel.run_id, Kernel.ordinal)):
            out[k.run_id]["kernels"].append(kernel_to_dict(k))
        for e in s.scalars(select(FusionEdge).where(FusionEdge.run_id.in_(ids)).order_by(FusionEdge.id)):
            out[e.run_id]["fusion_edges"].append(fusion_to_dict(e))

    def get_run(self, run_id: int, with_samples: bool = False, with_kernels: bool = False) -> dict[str, Any]:
        """One run as a dict shaped like ``Measurement.to_dict()`` (plus ids, model and device names)."""
        stmt = self._runs_query().where(Run.id == int(run_id))
        if with_samples:
            stmt = stmt.options(undefer(Run.samples))
        with self._read("read the run") as s:
            row = s.execute(stmt).first()
            if row is None:
                raise StoreError(f"no run with id {run_id}")
            run, model, device = row
            d = run_to_dict(run, model, device)
            self._attach_details(s, {run.id: d}, with_kernels, {run.id: run.samples} if with_samples else None)
        return d

    def list_runs(
        self,
        model: int | str | None = None,
        device: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        *,
        kind: str | None = None,
        runtime: str | None = None,
        valid: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, without samples or kernels.

        ``model`` is an id (int), a name (all versions) or ``name:VERSION``; ``device`` an id or a name.
        """
        stmt = self._runs_query(model, device, status, kind, runtime, valid)
        stmt = stmt.order_by(Run.created_at.desc(), Run.id.desc())
        if limit is not None:
            stmt = stmt.limit(max(0, int(limit)))
        with self._read("list runs") as s:
            return [run_to_dict(r, m, d) for r, m, d in s.execute(stmt)]

    def done_config_keys(
        self,
        model_id: int,
        device_id: str,
        *,
        kind: str | None = "bench",
        statuses: Iterable[str] | None = None,
    ) -> set[str]:
        """Config keys already recorded for this model on this device, so a resumed collection skips them.

        Every recorded status counts by default (a config that crashed would crash again); pass
        ``statuses=("ok", "unstable")`` to retry failures.
        """
        stmt = select(Run.config_key).distinct().where(Run.model_id == int(model_id), Run.device_id == device_id)
        if kind is not None:
            stmt = stmt.where(Run.kind == kind)
        if statuses is not None:
            stmt = stmt.where(Run.status.in_(list(statuses)))
        with self._read("read recorded configurations") as s:
            return set(s.scalars(stmt))

    def iter_runs_for_export(
        self,
        model: int | str | None = None,
        device: str | None = None,
        status: str | Iterable[str] | None = None,
        *,
        kind: str | None = None,
        valid_only: bool = False,
        with_samples: bool = False,
        with_kernels: bool = False,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching run in id order, with its model, device descriptor and environment attached.

        Reads page by page (keyset on id) in short read transactions, so exporting a large database needs
        bounded memory and never holds a lock between pages; rows added during the export past the last
        page read are included.
        """
        base = self._runs_query(model, device, status, kind, valid=True if valid_only else None)
        if with_samples:
            base = base.options(undefer(Run.samples))
        models: dict[int, dict[str, Any]] = {}
        envs: dict[str, dict[str, Any] | None] = {}
        last_id = 0
        while True:
            stmt = base.where(Run.id > last_id).order_by(Run.id).limit(max(1, int(page_size)))
            with self._read("export runs") as s:
                rows = list(s.execute(stmt))
                if not rows:
                    return
                page: dict[int, dict[str, Any]] = {}
                for run, m, dev in rows:
                    d = run_to_dict(run, m, dev)
                    if m.id not in models:
                        models[m.id] = model_to_dict(m)
                    d["model_info"] = models[m.id]
                    d["device_descriptor"] = dev.descriptor
                    if run.environment_id is not None and run.environment_id not in envs:
                        env = s.get(Environment, run.environment_id)
                        envs[run.environment_id] = environment_to_dict(env) if env else None
                    d["environment"] = envs.get(run.environment_id) if run.environment_id else None
                    page[run.id] = d
                samples = {r.id: r.samples for r, _, _ in rows} if with_samples else None
                self._attach_details(s, page, with_kernels, samples)
                last_id = rows[-1][0].id
            yield from page.values()

    def count_runs(
        self,
        model: int | str | None = None,
        device: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` would return without a limit."""
        stmt = self._runs_query(model, device, status).with_only_columns(func.count(Run.id))
        with self._read("count runs") as s:
            return int(s.scalar(stmt) or 0)

    def set_run_valid(self, run_id: int, valid: bool, reasons: Iterable[str] = ()) -> None:
        """Mark a stored run invalid (or valid again) after the fact, e.g. when an outlier check flags it;
        the measurement itself is never altered."""
        with self._write("update the run") as s:
            result = s.execute(
                update(Run)
                .where(Run.id == int(run_id))
                .values(valid=bool(valid), invalid_reasons=[str(r) for r in reasons])
            )
            if result.rowcount == 0:
                raise StoreError(f"no run with id {run_id}")
