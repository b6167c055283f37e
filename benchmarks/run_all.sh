#!/usr/bin/env bash
# Every benchmark number the README quotes, from a clean checkout (after the README's set-up), one after another.
# About 5 hours on 2 CPU cores; the two halves below (UMed, comparison) can run at the same time, one per core:
#   OMP_NUM_THREADS=1 bash benchmarks/run_all.sh umed &  OMP_NUM_THREADS=1 bash benchmarks/run_all.sh compare &
# Results: benchmarks/results/efficacy_*.json (+ reports/ for the runs with --keep-report); then
#   .venv/bin/python benchmarks/summarize.py     and     .venv/bin/python benchmarks/summarize.py --compare ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
part=${1:-all}
umed="$PY benchmarks/efficacy.py --task brats_core --method umed --config configs/brats_tumour_core.yaml --tag noclip"

if [[ $part == all || $part == umed ]]; then
  # issue 5: the shipped UMed settings on BraTS tumour core (T1c), every victim and defense
  $umed --victims unet --defenses none,intensity
  $umed --victims segresnet,basicunet,attentionunet --defenses none --result-tag noclip_victims --keep-report
  $umed --victims unet3d --defenses none --epochs 10 --result-tag noclip_unet3d
  $umed --victims unet --defenses gaussian,median,downsample --epochs 10 --result-tag noclip_defenses --keep-report
  $umed --victims unet --defenses jpeg,augment,mix --epochs 10 --result-tag noclip_defenses2
  $umed --victims unet --defenses quantize,adversarial --epochs 10 --result-tag noclip_defenses3
  # whole tumour on FLAIR (a threshold task, reported beside its floor) and ISBI membranes
  $PY benchmarks/efficacy.py --task brats_whole --method umed --config configs/umed.yaml --victims unet --tag default --keep-report
  $PY benchmarks/efficacy.py --task isbi --method umed --config configs/isbi_membranes.yaml --victims unet,segresnet \
      --tag default --crop 256 --epochs 40 --keep-report
fi

if [[ $part == all || $part == compare ]]; then
  # issue 6: every baseline at the PSNR-matched budget of the UMed configs (50 dB exactly, cap 24/255 on BraTS)
  for m in random lsp ar em tap sep salm; do
    $PY benchmarks/efficacy.py --task brats_core --method $m --config configs/methods/$m.yaml --target-psnr 50 \
        --set eps_cap=24/255 --victims unet --tag psnr50
  done
  for m in random lsp ar em tap sep salm; do
    $PY benchmarks/efficacy.py --task isbi --method $m --config configs/methods/$m.yaml --target-psnr 50 \
        --set band_width=1 --set intensity_mode=window --set 'window=[0,255]' --victims unet --tag psnr50 --crop 256 --epochs 40
  done
fi
