"""The performance database's tables.

The schema is normalised around provenance: a run points at the exact model file (content hash + version),
the device fingerprint and the software environment it was measured with, so a number in the database can
always be traced back to what produced it. Models are soft-deleted for the same reason — deleting a model
must never orphan or erase the runs measured on it.

Columns that queries filter or sort on (runtime, batch size, threads, status, latency percentiles) are real
columns; everything else the measurement engine reports (full config, provenance, raw samples) is kept
verbatim as JSON so that nothing measured is ever thrown away. Alembic migrations under ``migrations/``
create exactly these tables; ``tests/test_store.py`` checks that the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

#: Alembic's bookkeeping table. Named after the project so a PostgreSQL database shared with another
#: Alembic-managed application never mixes the two schema histories.
VERSION_TABLE = "inferperf_schema_version"

#: statuses a run may have; "unstable" is a measurement whose CV stayed above the guard after repeats
RUN_STATUSES = ("ok", "unstable", "failed", "timeout", "crashed")

#: deterministic constraint names, so later migrations (and SQLite batch mode) can refer to them
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON everywhere, JSONB on PostgreSQL (indexable, compact, and comparable). Python None is stored as SQL
#: NULL, not as the JSON literal ``null``, so ``IS NULL`` filters mean what they say.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: 64-bit ids for the tables that grow by thousands of rows per run; SQLite only auto-increments a column
#: declared exactly INTEGER PRIMARY KEY (which is 64-bit there anyway)
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp in the database is UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Device(Base):
    """A piece of hardware, keyed by the stable fingerprint of its descriptor."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    descriptor: Mapped[dict[str, Any]] = mapped_column(JSONType)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Environment(Base):
    """A software environment (library versions, OS, kernel), keyed by the hash of its JSON."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    python: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str | None] = mapped_column(String(256))
    kernel: Mapped[str | None] = mapped_column(String(256))
    versions: Mapped[dict[str, Any]] = mapped_column(JSONType)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """One version of a named model; the bytes live in the content-addressed store under INFERPERF_HOME.

    The same name with different bytes is a new version; the same bytes under the same name are the same
    row. ``deleted`` hides a model from listings without breaking the provenance of its runs.
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        UniqueConstraint("name", "content_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str | None] = mapped_column(String(128), index=True)
    framework: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    input_spec: Mapped[Any | None] = mapped_column(JSONType)
    graph_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    file_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class Run(Base):
    """One measurement of one model under one configuration on one device.

    Re-running a configuration appends a new row; ``config_key`` groups the repeats and lets a collection
    job resume by skipping keys already recorded.
    """

    __tablename__ = "runs"
    __table_args__ = (
        Index(None, "model_id", "device_id", "config_key"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), default="bench", index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), index=True)
    environment_id: Mapped[str | None] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Float)

    # configuration: the full dict plus the columns queries filter on
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    config_key: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str | None] = mapped_column(String(64), index=True)
    provider: Mapped[str | None] = mapped_column(String(128))
    precision: Mapped[str | None] = mapped_column(String(32))
    opt_level: Mapped[str | None] = mapped_column(String(32))
    batch_size: Mapped[int | None] = mapped_column(Integer, index=True)
    intra_op_threads: Mapped[int | None] = mapped_column(Integer)
    inter_op_threads: Mapped[int | None] = mapped_column(Integer)

    # outcome
    status: Mapped[str] = mapped_column(String(16), index=True)
    valid: Mapped[bool] = mapped_column(Boolean)
    invalid_reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)

    # latency statistics (milliseconds), all from raw samples
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    p99_ms: Mapped[float | None] = mapped_column(Float)
    p999_ms: Mapped[float | None] = mapped_column(Float)
    mean_ms: Mapped[float | None] = mapped_column(Float)
    min_ms: Mapped[float | None] = mapped_column(Float)
    max_ms: Mapped[float | None] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float)
    cv: Mapped[float | None] = mapped_column(Float)
    ci95_lo_ms: Mapped[float | None] = mapped_column(Float)
    ci95_hi_ms: Mapped[float | None] = mapped_column(Float)
    n_samples: Mapped[int | None] = mapped_column(Integer)
    #: raw samples are kept (measurement rule 4); deferred so listings never load them
    samples: Mapped[list[float] | None] = deferred(mapped_column(JSONType))
    throughput: Mapped[float | None] = mapped_column(Float)

    # start-up, memory, energy, utilisation
    cold_start_ms: Mapped[float | None] = mapped_column(Float)
    session_create_ms: Mapped[float | None] = mapped_column(Float)
    first_inference_ms: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[float | None] = mapped_column(Float)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    arena_mb: Mapped[float | None] = mapped_column(Float)
    energy_j: Mapped[float | None] = mapped_column(Float)
    energy_source: Mapped[str | None] = mapped_column(String(64))
    power_w: Mapped[float | None] = mapped_column(Float)
    cpu_util: Mapped[float | None] = mapped_column(Float)

    #: kernel / fusion-edge rows stored with the run; None when the run was not profiled (not the same as
    #: a profile with zero rows), so dataset builders can select profiled runs without a join
    n_kernels: Mapped[int | None] = mapped_column(Integer)
    n_fusion_edges: Mapped[int | None] = mapped_column(Integer)

    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    #: fields of the measurement record this schema has no column for, kept rather than dropped
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    model: Mapped[Model] = relationship(lazy="raise")
    device: Mapped[Device] = relationship(lazy="raise")
    environment: Mapped[Environment | None] = relationship(lazy="raise")


class Kernel(Base):
    """One executed kernel of a run's profile, in execution order (``ordinal``)."""

    __tablename__ = "kernels"
    __table_args__ = (Index(None, "run_id", "ordinal"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    op_type: Mapped[str | None] = mapped_column(String(128), index=True)
    kernel_type: Mapped[str | None] = mapped_column(String(128))
    provider: Mapped[str | None] = mapped_column(String(128))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    duration_ms_runs: Mapped[list[float] | None] = mapped_column(JSONType)
    input_shapes: Mapped[Any | None] = mapped_column(JSONType)
    output_shapes: Mapped[Any | None] = mapped_column(JSONType)
    covered_nodes: Mapped[list[str] | None] = mapped_column(JSONType)


class FusionEdge(Base):
    """An edge of the original graph, labelled with whether the runtime fused its two ends."""

    __tablename__ = "fusion_edges"
    __table_args__ = (Index(None, "run_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    src: Mapped[str] = mapped_column(Text)
    dst: Mapped[str] = mapped_column(Text)
    tensor: Mapped[str | None] = mapped_column(Text)
    fused: Mapped[bool] = mapped_column(Boolean)
