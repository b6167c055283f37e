"""One error hierarchy for umed.

Every message starts with the file (or folder) it is about, then the problem, then what was expected and what was
found: ``"{path}: {problem} (expected {x}, got {y})"``. Messages never contain voxel data (it may be patient data).
"""

from __future__ import annotations

__all__ = ["UmedError", "InputError", "GeometryError", "ConfigError", "OutputError", "ProtectorError"]


class UmedError(Exception):
    """Base class of every error umed raises on purpose."""


class InputError(UmedError, ValueError):
    """An input file or folder cannot be used: unreadable, truncated, wrong dtype, missing mask, NaN/Inf voxels."""


class GeometryError(InputError):
    """Image and mask (or two images) disagree in shape, affine or spacing beyond the tolerance."""


class ConfigError(UmedError, ValueError):
    """A setting or a combination of settings is invalid (bad budget, unknown method, output inside input...)."""


class OutputError(UmedError, OSError):
    """An output cannot be written (folder inside an input folder, permission, disk)."""


class ProtectorError(UmedError, RuntimeError):
    """A protector produced an unusable perturbation (NaN or Inf, e.g. from a fit that diverged): nothing is written."""
