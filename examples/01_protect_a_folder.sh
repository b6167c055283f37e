#!/usr/bin/env bash
# Protect a folder of NIfTI cases with the `umed` command line, then inspect the result with `umed info`.
#
#   examples/01_protect_a_folder.sh [OUT]      (OUT defaults to a new temporary folder)
#
# Needs `umed` and `python` on PATH (e.g. `source .venv/bin/activate`). No download: the cases are synthetic phantoms.
set -euo pipefail

OUT="${1:-$(mktemp -d "${TMPDIR:-/tmp}/umed-example-01.XXXXXX")}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python}"
export COLUMNS="${COLUMNS:-120}"  # wide enough for the tables when the output is not a terminal

echo "== 1. four synthetic 3D phantoms (organ = label 1, lesion = label 2) in $OUT/phantoms"
"$PYTHON" -c '
import sys
from pathlib import Path
from umed.phantom import make_phantom_dataset
images, masks = make_phantom_dataset(Path(sys.argv[1]), n_cases=4, ndim=3, shape=(48, 48, 12), seed=0)
print(f"   images: {images}\n   masks:  {masks}")
' "$OUT/phantoms"

echo "== 2. umed protect with the shipped fast settings (umed configs fast)"
umed protect "$OUT/phantoms/images" --masks "$OUT/phantoms/masks" --out "$OUT/protected" --config fast

echo "== 3. umed info on the protected copy (same format, shape, spacing and dtype as the input)"
umed info "$OUT/protected" --masks "$OUT/phantoms/masks" --json "$OUT/info.json"

echo "== done"
echo "   protected cases: $OUT/protected/*.nii.gz"
echo "   protector:       $OUT/protected/protector.json (+ protector.pt)"
echo "   manifest:        $OUT/protected/manifest.json (seed, budget, PSNR/SSIM and SHA-256 of every case)"
echo "   info table:      $OUT/info.json"
