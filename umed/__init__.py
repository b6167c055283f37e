"""umed: unlearnable medical image segmentation datasets (UMed and baselines), with an audit.

The names that need torch (``protect_dataset``, ``run_audit``) are imported on first use so that ``umed --help`` and
``import umed`` stay fast.
"""

from umed.case import Case, CaseMeta, CaseResult
from umed.errors import ConfigError, GeometryError, InputError, OutputError, UmedError
from umed.settings import ProtectConfig, load_protect_config

__version__ = "0.1.0"  # the one place the version lives (pyproject.toml reads it)

__all__ = [
    "__version__",
    "Case",
    "CaseMeta",
    "CaseResult",
    "UmedError",
    "InputError",
    "GeometryError",
    "ConfigError",
    "OutputError",
    "ProtectConfig",
    "load_protect_config",
    "protect_dataset",
    "AuditConfig",
    "run_audit",
]

_LAZY = {"protect_dataset": "umed.protect", "AuditConfig": "umed.audit", "run_audit": "umed.audit"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'umed' has no attribute {name!r}")
