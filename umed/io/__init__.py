"""Reading, writing and pairing cases: NIfTI, DICOM series, PNG/TIFF; dataset layouts; validation; atomic writes."""

from umed.io.atomic import atomic_dir, atomic_file
from umed.io.dataset import load_case, load_mask, quantize, quantize_slices, save_case
from umed.io.dicom import load_dicom_series, save_dicom_series
from umed.io.discover import case_name, check_output_location, discover_cases, output_path_for
from umed.io.natural import load_natural, save_natural
from umed.io.nifti import load_nifti, save_nifti
from umed.io.synthetic_dicom import make_dicom_series
from umed.io.validate import check_finite, mask_is_empty, validate_case

__all__ = [
    "load_case",
    "load_mask",
    "save_case",
    "quantize",
    "quantize_slices",
    "discover_cases",
    "validate_case",
    "mask_is_empty",
    "check_finite",
    "check_output_location",
    "output_path_for",
    "case_name",
    "make_dicom_series",
    "load_nifti",
    "save_nifti",
    "load_dicom_series",
    "save_dicom_series",
    "load_natural",
    "save_natural",
    "atomic_file",
    "atomic_dir",
]
