"""User-facing errors.

Every error a user can cause with bad input is an :class:`InferperfError`; the CLI prints its message as
one line on stderr and exits non-zero, so no traceback ever reaches the user for a mistake of theirs.
"""

from __future__ import annotations


class InferperfError(Exception):
    """An error whose message is meant for the user, not a bug report."""

    exit_code: int = 2


class ModelLoadError(InferperfError):
    """The model file or architecture name cannot be turned into an ONNX graph."""


class UnboundDimensionError(InferperfError):
    """A dynamic input dimension has no value: measurements and FLOPs need concrete shapes."""

    def __init__(self, input_name: str, dim_name: str, hint: str = "") -> None:
        self.input_name = input_name
        self.dim_name = dim_name
        msg = f"input '{input_name}' has an unbound dynamic dimension '{dim_name}'"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class UnknownArchitectureError(InferperfError):
    """The named architecture is not in the registry."""


class ConfigError(InferperfError):
    """A configuration value is invalid."""


class StoreError(InferperfError):
    """The performance database cannot be reached or is inconsistent."""
