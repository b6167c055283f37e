"""``umed verify``: a secret keyed mark in the released data, and an exact test of whether a suspect model was trained
on it (docs/verify.md).

The flow: ``umed protect`` draws a key (:func:`draw_key`) and writes its mark (:mod:`umed.verify.mark`) into every
structure; the owner keeps the key. Later, :func:`make_probes` builds probe images from the owner's own clean cases
with the key's mark and control marks of the same family in healthy tissue; the suspect's answers on them go through
:func:`score_predictions` (or :func:`score_with`), whose p-value is the key's rank among the controls
(:func:`rank_test`): exact under the null hypothesis whatever the model's own preferences.
"""

from umed.verify.answers import Answer, read_answers
from umed.verify.design import ProbeDesign, design_probes, render_probe, score_design
from umed.verify.family import MarkFamily
from umed.verify.key import MarkKey, draw_key, load_key, save_key
from umed.verify.manifest import ProbeManifest, load_probe_manifest, save_probe_manifest
from umed.verify.probes import ProbeRun, make_probes
from umed.verify.score import ALPHA, VerifyResult, score_answers, score_predictions, score_with
from umed.verify.settings import VerifySettings
from umed.verify.stats import RankTest, naive_paired_test, rank_test

__all__ = [
    "ALPHA",
    "Answer",
    "MarkFamily",
    "MarkKey",
    "ProbeDesign",
    "ProbeManifest",
    "ProbeRun",
    "RankTest",
    "VerifyResult",
    "VerifySettings",
    "design_probes",
    "draw_key",
    "load_key",
    "load_probe_manifest",
    "make_probes",
    "naive_paired_test",
    "rank_test",
    "read_answers",
    "render_probe",
    "save_key",
    "save_probe_manifest",
    "score_answers",
    "score_design",
    "score_predictions",
    "score_with",
]
