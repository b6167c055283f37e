"""``umed protect`` as a package, one module per step of the data flow:

- :mod:`umed.protect.run`: :func:`protect_dataset`, the run: discover -> plan -> apply every case -> manifest;
- :mod:`umed.protect.plan`: the cases' hashes, the resume key, reuse of an earlier OUT, which protector to apply;
- :mod:`umed.protect.fit`: the training slices, fitting the protector, the intensity mapping of a case;
- :mod:`umed.protect.engine`: the per-case job mapped in process or on Dask (``--workers``, ``--scheduler``);
- :mod:`umed.protect.case`: one case: load, :func:`protect_array`, guarantee checks, atomic write;
- :mod:`umed.protect.apply`: :func:`protect_array` on one image array (budget, perturbation, file units);
- :mod:`umed.protect.manifest`: ``OUT/manifest.json`` as typed records;
- :mod:`umed.protect.protector_io`: save, load and export a fitted protector.

The settings (:class:`umed.settings.ProtectConfig`) stay in :mod:`umed.settings`: the audit, the CLI and
``import umed`` read them without loading the protect pipeline.
"""

from umed.protect.apply import ProtectedArray, case_eps_scale, exact_psnr_scale, protect_array, structure_slices
from umed.protect.case import change_metrics
from umed.protect.run import ProtectSummary, protect_dataset

__all__ = [
    "ProtectedArray",
    "ProtectSummary",
    "case_eps_scale",
    "change_metrics",
    "exact_psnr_scale",
    "protect_array",
    "protect_dataset",
    "structure_slices",
]
