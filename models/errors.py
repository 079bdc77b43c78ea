"""Error types shared by every part of finsent.

`FinsentError` is a user-facing error: the CLI prints its message (which names the file, row,
topic/partition/offset at fault) and exits non-zero without a traceback.
"""

from __future__ import annotations


class FinsentError(Exception):
    """A problem the user can fix; the message says where and what."""


class ArtifactError(FinsentError):
    """A model artifact is missing, incomplete, tampered with or inconsistent."""


class DataError(FinsentError):
    """Training or evaluation data is unreadable or invalid (message names file and row)."""


class ExportValidationError(FinsentError):
    """An exported ONNX variant disagrees with its reference beyond tolerance."""


class ConfigError(FinsentError):
    """Settings (environment, config file, flags) are invalid."""
