"""The ``inferperf`` command.

Sub-command modules register themselves on :data:`app`; each keeps its heavy imports (torch, onnxruntime,
torch_geometric) inside the command function so that ``inferperf --help`` answers in well under a second.
User mistakes surface as :class:`~inferperf.errors.InferperfError` and are printed as one line on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from inferperf import __version__
from inferperf.errors import InferperfError

app = typer.Typer(
    name="inferperf",
    help="Benchmark and predict deep-learning inference performance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: modules that define commands on ``app`` (imported for their side effect, in this order)
COMMAND_MODULES = (
    "inferperf.cli.graph",
    "inferperf.cli.measure",
    "inferperf.cli.store",
    "inferperf.cli.zoo",
    "inferperf.cli.models",
    "inferperf.cli.dataset",
    "inferperf.cli.serving",
    "inferperf.cli.predict",
    "inferperf.cli.colocate",
    "inferperf.cli.demo",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inferperf {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version."),
) -> None:
    """Benchmark and predict deep-learning inference performance."""


for _mod in COMMAND_MODULES:
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as exc:  # a command group not built yet must not break the others
        if exc.name != _mod:
            raise


def fail(message: str, code: int = 2) -> None:
    """Print one clear line on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def run() -> None:
    """Console entry point: turns user errors into one line on stderr and a non-zero exit."""
    os.environ.setdefault("TMPDIR", "/tmp")
    try:
        app()
    except InferperfError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
