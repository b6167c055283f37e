"""umed: unlearnable medical image segmentation datasets (UMed and baselines), with an audit."""

from umed.case import Case, CaseMeta, CaseResult
from umed.errors import ConfigError, GeometryError, InputError, OutputError, UmedError

__version__ = "0.1.0"

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
]
