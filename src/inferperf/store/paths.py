"""Where inferperf keeps its state, and the content-addressed model file store.

Everything lives under ``$INFERPERF_HOME`` (default ``~/.inferperf``): the default SQLite database
``perf.db`` and the model files under ``models/<hash[:2]>/<hash>.onnx``. Model files are addressed by the
sha256 of their bytes so that a run's provenance (its model's ``content_hash``) always names exactly the
graph that was measured, and identical files are stored once whatever they are called.

This module imports nothing heavy: the CLI resolves paths and URLs before deciding whether to touch a
database at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from inferperf.errors import StoreError

ENV_HOME = "INFERPERF_HOME"
#: a database URL (or SQLite path) used when no ``--db``/``url`` is given
ENV_DB = "INFERPERF_DB"
DB_FILENAME = "perf.db"
MODELS_DIRNAME = "models"
MODEL_SUFFIX = ".onnx"

_HASH_CHARS = frozenset("0123456789abcdef")


def inferperf_home() -> Path:
    """The state directory (not created here: read-only commands must not litter the file system)."""
    raw = os.environ.get(ENV_HOME)
    return Path(raw).expanduser() if raw else Path.home() / ".inferperf"


def default_db_url() -> str:
    """The SQLite database under ``$INFERPERF_HOME``; its directory is created so SQLite can open it."""
    home = inferperf_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / DB_FILENAME).resolve()}"


def resolve_db_url(url: str | None) -> str:
    """Turn what a user may pass as ``--db`` into a SQLAlchemy URL.

    ``None`` means ``$INFERPERF_DB`` or else the default SQLite file; a string without ``://`` is a path to
    a SQLite file; ``postgres://`` and ``postgresql://`` get the psycopg (v3) driver, the one inferperf
    ships with, since SQLAlchemy would otherwise look for psycopg2.
    """
    if not url:
        url = os.environ.get(ENV_DB) or None
        if not url:
            return default_db_url()
    url = url.strip()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def models_dir(home: Path | None = None) -> Path:
    return (home or inferperf_home()) / MODELS_DIRNAME


def _check_hash(content_hash: str) -> str:
    h = content_hash.lower()
    if len(h) != 64 or not set(h) <= _HASH_CHARS:
        raise StoreError(f"'{content_hash}' is not a sha256 content hash (64 hex digits)")
    return h


def model_file_path(content_hash: str, home: Path | None = None) -> Path:
    """Where the model file with this sha256 lives (whether or not it has been stored yet)."""
    h = _check_hash(content_hash)
    return models_dir(home) / h[:2] / f"{h}{MODEL_SUFFIX}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, streamed so multi-GB models do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def put_model_file(path: str | os.PathLike[str], home: Path | None = None) -> str:
    """Copy a model file into the content-addressed store and return its sha256.

    The copy goes through a temporary file in the destination directory and an atomic rename, so a killed
    process or two processes storing the same model never leave a truncated file under a valid hash. A
    file already stored is not copied again. Only the ``.onnx`` file itself is stored: a model whose weights
    live in ONNX external-data files must be saved self-contained first.
    """
    src = Path(path)
    if not src.is_file():
        raise StoreError(f"model file not found: {src}")
    content_hash = file_sha256(src)
    dest = model_file_path(content_hash, home)
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return content_hash
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=MODEL_SUFFIX, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if file_sha256(tmp_name) != content_hash:
            raise StoreError(f"model file {src} changed while it was being stored; try again")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return content_hash
