"""initial schema: devices, environments, models, runs, kernels, fusion_edges

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The types are spelled out here rather than imported from ``schema.py``: a migration is history and must
keep creating what it created when it was written, whatever the ORM later becomes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("descriptor", JSONType, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("python", sa.String(64), nullable=True),
        sa.Column("os", sa.String(256), nullable=True),
        sa.Column("kernel", sa.String(256), nullable=True),
        sa.Column("versions", JSONType, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(128), nullable=True),
        sa.Column("framework", sa.String(64), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("input_spec", JSONType, nullable=True),
        sa.Column("graph_summary", JSONType, nullable=True),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_models_name_version")),
        sa.UniqueConstraint("name", "content_hash", name=op.f("uq_models_name_content_hash")),
    )
    op.create_index(op.f("ix_models_content_hash"), "models", ["content_hash"])
    op.create_index(op.f("ix_models_name"), "models", ["name"])
    op.create_index(op.f("ix_models_family"), "models", ["family"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("environment_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("precision", sa.String(32), nullable=True),
        sa.Column("opt_level", sa.String(32), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("intra_op_threads", sa.Integer(), nullable=True),
        sa.Column("inter_op_threads", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("invalid_reasons", JSONType, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *(
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "mean_ms", "min_ms", "max_ms", "std_ms",
                "cv", "ci95_lo_ms", "ci95_hi_ms",
            )
        ),
        sa.Column("n_samples", sa.Integer(), nullable=True),
        sa.Column("samples", JSONType, nullable=True),
        sa.Column("throughput", sa.Float(), nullable=True),
        *(
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "cold_start_ms", "session_create_ms", "first_inference_ms", "memory_mb", "peak_rss_mb",
                "arena_mb", "energy_j",
            )
        ),
        sa.Column("energy_source", sa.String(64), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("cpu_util", sa.Float(), nullable=True),
        sa.Column("n_kernels", sa.Integer(), nullable=True),
        sa.Column("n_fusion_edges", sa.Integer(), nullable=True),
        sa.Column("provenance", JSONType, nullable=True),
        sa.Column("extra", JSONType, nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_runs_model_id_models"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_runs_device_id_devices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_runs_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    for cols in (
        ["kind"], ["model_id"], ["device_id"], ["environment_id"], ["runtime"], ["batch_size"], ["status"],
        ["created_at"],
    ):
        op.create_index(op.f(f"ix_runs_{cols[0]}"), "runs", cols)
    op.create_index(
        op.f("ix_runs_model_id_device_id_config_key"), "runs", ["model_id", "device_id", "config_key"]
    )

    op.create_table(
        "kernels",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("op_type", sa.String(128), nullable=True),
        sa.Column("kernel_type", sa.String(128), nullable=True),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms_runs", JSONType, nullable=True),
        sa.Column("input_shapes", JSONType, nullable=True),
        sa.Column("output_shapes", JSONType, nullable=True),
        sa.Column("covered_nodes", JSONType, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_kernels_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernels")),
    )
    op.create_index(op.f("ix_kernels_run_id_ordinal"), "kernels", ["run_id", "ordinal"])
    op.create_index(op.f("ix_kernels_op_type"), "kernels", ["op_type"])

    op.create_table(
        "fusion_edges",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("src", sa.Text(), nullable=False),
        sa.Column("dst", sa.Text(), nullable=False),
        sa.Column("tensor", sa.Text(), nullable=True),
        sa.Column("fused", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_fusion_edges_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fusion_edges")),
    )
    op.create_index(op.f("ix_fusion_edges_run_id"), "fusion_edges", ["run_id"])


def downgrade() -> None:
    op.drop_table("fusion_edges")
    op.drop_table("kernels")
    op.drop_table("runs")
    op.drop_table("models")
    op.drop_table("environments")
    op.drop_table("devices")
