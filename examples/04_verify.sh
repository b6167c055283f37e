#!/usr/bin/env bash
# umed verify on synthetic phantoms: protect (with the secret keyed mark, the default), keep the key, make probes from
# cases that were never released, run a suspect model (TorchScript) on them, and read the test.
# Usage: bash examples/04_verify.sh [OUT]   (OUT: a new temporary folder when not given)
set -euo pipefail

OUT="${1:-$(mktemp -d "${TMPDIR:-/tmp}/umed-example-04.XXXXXX")}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python}"
export COLUMNS="${COLUMNS:-120}"

echo "== 1. phantoms: 4 to release, 2 kept private (never released) in $OUT"
"$PYTHON" -c '
import sys
from pathlib import Path
from umed.phantom import make_phantom_dataset
make_phantom_dataset(Path(sys.argv[1]) / "release_data", n_cases=4, shape=(48, 48, 12), seed=0)
make_phantom_dataset(Path(sys.argv[1]) / "private_data", n_cases=2, shape=(48, 48, 12), seed=1)
' "$OUT"

echo "== 2. umed protect (the default: the secret keyed mark; the key goes beside OUT, never inside)"
umed protect "$OUT/release_data/images" --masks "$OUT/release_data/masks" --out "$OUT/release" --labels 2

echo "== 3. umed verify probes: probe images from the private cases, and the secret manifest"
umed verify probes "$OUT/private_data/images" --masks "$OUT/private_data/masks" --labels 2 \
    --key "$OUT/release.umed-key.json" --out "$OUT/probes" --manifest "$OUT/probes.secret.json" --controls 99

echo "== 4. a suspect model (here an untrained MONAI UNet saved as TorchScript: it never saw the key)"
"$PYTHON" -c '
import sys, torch
from monai.networks.nets import UNet
torch.manual_seed(0)
torch.jit.script(UNet(2, 1, 2, (8, 16), (2,), num_res_units=0).eval()).save(sys.argv[1])
' "$OUT/suspect.ts" 2>/dev/null

echo "== 5. umed verify score: the key's rank among the control marks, the exact p-value and the verdict"
umed verify score --probes "$OUT/probes" --manifest "$OUT/probes.secret.json" --key "$OUT/release.umed-key.json" \
    --model "$OUT/suspect.ts" --json "$OUT/verdict.json"

echo "== done"
echo "   release:   $OUT/release (what you publish)"
echo "   secret:    $OUT/release.umed-key.json, $OUT/probes.secret.json (keep them)"
echo "   verdict:   $OUT/verdict.json"
