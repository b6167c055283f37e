"""The audit: does a protected dataset stop a segmentation network from learning, and at what visual cost?

The modules follow the flow of one audit (:func:`run_audit` in :mod:`umed.audit.run` calls them in this order):

=====================  ===============================================================================================
module                 what it holds
=====================  ===============================================================================================
``config``             :class:`AuditConfig`, the settings (defaults from the shipped ``configs/audit.yaml``)
``data``               pairing clean and protected cases with their masks, the test split, loading a pair
``samples``            what the victims see: slices, volumes, crops, resampling, the figure's example slices
``floor``              the threshold floor, the baseline every victim is measured against
``victims``            the victim networks (a :class:`~umed.registry.Registry`)
``defenses``           what a data user may do against the protection (a registry); ``augment``: nnU-Net's
                       training augmentation, one of them
``training``           the loop that trains one victim and scores it every epoch
``selection``          the three model-selection rules and the validation split
``verdict``            the verdicts in plain words
``runs``               one victim under one defense on clean and protected data
``cache``              the clean-run cache shared by audits of one dataset
``records``            the result records (:class:`AuditReport` and its parts)
``report``             ``report.json``, ``report.md`` and the figures
=====================  ===============================================================================================

Example:
    >>> from umed.audit import AuditConfig
    >>> AuditConfig(clean="ct", protected="ct_prot", masks="labels").victims
    ('unet',)
"""

from umed.audit.config import AuditConfig
from umed.audit.records import AuditReport, AuditRun, CaseAudit, ExampleSlice, VictimRun
from umed.audit.report import write_report
from umed.audit.run import run_audit
from umed.audit.verdict import INCONCLUSIVE, NOT_PROTECTED, PARTLY_PROTECTED, PROTECTED

__all__ = [
    "INCONCLUSIVE",
    "NOT_PROTECTED",
    "PARTLY_PROTECTED",
    "PROTECTED",
    "AuditConfig",
    "AuditReport",
    "AuditRun",
    "CaseAudit",
    "ExampleSlice",
    "VictimRun",
    "run_audit",
    "write_report",
]
