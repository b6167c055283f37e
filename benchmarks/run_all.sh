#!/usr/bin/env bash
# Every benchmark number the README and docs/results.md quote, from a clean checkout (after the README's set-up).
# Parts: umed (issue 5), compare (issue 6), speed (issues 12, 15, 23), robust (issue 14), seeds-a, seeds-b,
# screen22 and tile22 (issue 22); data root $UMED_DATA
# (default ../shared/data).
# The efficacy results quoted so far were measured before the audit held out nnU-Net's validation fold, so these
# commands pass --no-validation to reproduce them; the augment rows quoted were measured with the earlier
# "nnU-Net-style" augmentation (commit d1db045), which umed/augment.py (nnU-Net 2.8.1's list) replaced.
# Several hours (the comparison half alone is about 6 core-hours, estimated from its runs); the two halves below can run at the same time, one per core:
#   OMP_NUM_THREADS=1 bash benchmarks/run_all.sh umed &  OMP_NUM_THREADS=1 bash benchmarks/run_all.sh compare &
# Results: benchmarks/results/efficacy_*.json (+ reports/ for the runs with --keep-report); then
#   .venv/bin/python benchmarks/summarize.py     and     .venv/bin/python benchmarks/summarize.py --compare ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
part=${1:-all}
eff="$PY benchmarks/efficacy.py --no-validation"
umed="$eff --task brats_core --method umed --config umed/configs/brats_tumour_core.yaml --tag noclip"

if [[ $part == all || $part == umed ]]; then
  # issue 5: the shipped UMed settings on BraTS tumour core (T1c), every victim and defense
  $umed --victims unet --defenses none,intensity
  $umed --victims segresnet,basicunet,attentionunet --defenses none --result-tag noclip_victims --keep-report
  $umed --victims unet3d --defenses none --epochs 10 --result-tag noclip_unet3d
  $umed --victims unet --defenses gaussian,median,downsample --epochs 10 --result-tag noclip_defenses --keep-report
  $umed --victims unet --defenses jpeg,augment,mix --epochs 10 --result-tag noclip_defenses2
  # whole tumour on FLAIR (a threshold task, reported beside its floor) and ISBI membranes
  $eff --task brats_whole --method umed --config umed/configs/umed.yaml --victims unet --tag default --keep-report
  $eff --task isbi --method umed --config umed/configs/isbi_membranes.yaml --victims unet,segresnet \
      --tag default --crop 256 --epochs 40 --keep-report
fi

if [[ $part == all || $part == compare ]]; then
  # issue 6: every baseline with its own umed/configs/methods/*.yaml (nothing tuned per method), three budgets.
  # (a) the PSNR-matched budget of the UMed configs: 50 dB exactly per case, L-inf cap 24/255 on BraTS
  for m in random lsp ar em tap sep salm; do
    $eff --task brats_core --method $m --config umed/configs/methods/$m.yaml --target-psnr 50 \
        --set eps_cap=24/255 --victims unet --tag psnr50
    # SegResNet on the same protected data (resumes the protection, trains the other victim)
    $eff --task brats_core --method $m --config umed/configs/methods/$m.yaml --target-psnr 50 \
        --set eps_cap=24/255 --victims segresnet --tag psnr50 --result-tag psnr50_segresnet
  done
  isbi="--task isbi --set band_width=1 --set intensity_mode=window --set window=[0,255] --crop 256 --epochs 40"
  for m in random lsp ar em tap sep salm; do
    $eff $isbi --method $m --config umed/configs/methods/$m.yaml --target-psnr 50 --victims unet --tag psnr50
  done
  # (b) fixed L-inf budgets 8/255 and 4/255 (no PSNR rescale; UMed's texture-aware bound still scales inside)
  for eps in 8 4; do
    $eff --task brats_core --method umed --config umed/configs/brats_tumour_core.yaml --no-target-psnr \
        --eps $eps/255 --victims unet --tag eps$eps
    for m in random lsp ar em tap sep salm; do
      $eff --task brats_core --method $m --config umed/configs/methods/$m.yaml --eps $eps/255 \
          --victims unet --tag eps$eps
    done
  done
  # (c) SALM's K ablation at 8/255 (K = 0.1 is the eps8 run above)
  for k in 0.02 0.3; do
    $eff --task brats_core --method salm --config umed/configs/methods/salm.yaml --eps 8/255 \
        --set method_settings.k_fraction=$k --victims unet --tag eps8_k$k
  done
fi

if [[ $part == robust ]]; then
  # issue 14: the shipped settings under the attacker's ordinary pipeline, with nnU-Net's validation fold (all three
  # selection rules), 10 epochs. About 8 core-hours on this 2-core machine; the two halves can run at the same time, one per core:
  #   OMP_NUM_THREADS=1 bash benchmarks/run_all.sh robust-curve &  OMP_NUM_THREADS=1 bash benchmarks/run_all.sh robust-more &
  bash benchmarks/run_all.sh robust-curve
  bash benchmarks/run_all.sh robust-more
  $PY benchmarks/robust.py
fi
robust="$PY benchmarks/efficacy.py --task brats_core --method umed --config umed/configs/brats_tumour_core.yaml --epochs 10"
curve() {  # $1: dB per volume, $2: defenses, $3: optional suffix of the result (more defenses on the same protection);
  # the L-inf cap (24/255) is lifted below 50 dB
  local cap=1
  if [[ $1 -ge 50 ]]; then cap=24/255; fi
  $robust --target-psnr "$1" --set eps_cap=$cap --victims unet --defenses "$2" --tag "tradeoff_psnr$1" \
      ${3:+--result-tag "tradeoff_psnr$1_$3"}
}
if [[ $part == robust-curve ]]; then
  # (a) the trade-off: every defense at 50, 40, 35 and 30 dB; at 55 and 45 dB no defense first, the filtering
  # defenses later on the same protections (their clean runs come from the clean cache)
  for p in 50 30 40 35; do curve $p none,augment,downsample,gaussian; done
  for p in 45 55; do curve $p none; done
  for p in 45 55; do curve $p augment,downsample,gaussian filters; done
fi
if [[ $part == robust-more ]]; then
  # (b) the generator ablation: the fixed prior alone (no training steps), and trained with EOT
  $robust --tag ablation_prior --set method_settings.steps=0 --victims unet --defenses none,augment,downsample,gaussian
  $robust --tag ablation_eot --set 'method_settings.eot=[gaussian,median,downsample,augment,spectral]' --victims unet \
      --defenses none,gaussian,augment,downsample
  # (c) median and JPEG on the 50 dB protection of (a)
  $robust --tag tradeoff_psnr50 --result-tag robust50_more --victims unet --defenses median,jpeg
  # (d) mix under the validation fold (gain over the clean half alone), and the 3D UNet trained long enough to learn
  # (batch 2 as nnU-Net's 3d_fullres, 30 epochs: about 1 h per victim run on this machine)
  $robust --tag tradeoff_psnr50 --result-tag robust50_mix --victims unet --defenses mix
  $robust --tag tradeoff_psnr50 --result-tag robust50_unet3d --victims unet3d --defenses none --epochs 30
  # (e) SegResNet under blur and augmentation (about 2 min an epoch here), and a second audit seed (split, slices,
  # initialisation) for the UNet without a defense and under augmentation
  for d in gaussian augment; do
    $robust --tag tradeoff_psnr50 --result-tag robust50_segresnet_$d --victims segresnet --defenses $d
  done
  $robust --tag tradeoff_psnr50 --result-tag robust50_seed1 --audit-seed 1 --victims unet --defenses none,augment
fi
seeds="$PY benchmarks/efficacy.py --task brats_core --victims unet --defenses none --epochs 10"
learn="--set mark=false --set method_settings.saturation=0 --set method_settings.pattern_init=none \
  --set method_settings.surrogates=2 --set method_settings.surrogate_every=2 \
  --set method_settings.surrogate_reinit_every=60 --set method_settings.steps=200 --set method_settings.crop=64"
core=umed/configs/brats_tumour_core.yaml
if [[ $part == seeds-a ]]; then
  # issue 22: the ablation over 3 audit seeds (victim initialisation, slices, validation case), 2D UNet, no defense:
  # the fixed prior alone, the generators that learn (no saturation, no prior, a pool of 2 young surrogates) with
  # and without CDC kernels. One protection per design (seed 0), three audit seeds. About 2 core-hours; seeds-b on
  # the other core at the same time. Then: python benchmarks/seeds.py
  for s in 0 1 2; do
    $seeds --method umed --config $core --set mark=false --set method_settings.steps=0 --tag i22_prior \
        --result-tag i22_prior_seed$s --audit-seed $s
    $seeds --method umed --config $core $learn --tag i22_learn --result-tag i22_learn_seed$s --audit-seed $s
    $seeds --method umed --config $core $learn --set method_settings.theta=0 --tag i22_learn_nocdc \
        --result-tag i22_learn_nocdc_seed$s --audit-seed $s
  done
fi
if [[ $part == seeds-b ]]; then
  # issue 22: the shipped default (the keyed mark: a new key per seed, as each user draws one) and EM with EOT
  # inside its PGD steps (REM-style) over the same 3 audit seeds; then the 3D UNet on the mark (30 epochs, batch 2)
  for s in 1 0 2; do
    $seeds --method umed --tag i22_mark_key$s --result-tag i22_mark_seed$s --audit-seed $s
    $seeds --method em --config umed/configs/methods/em.yaml --target-psnr 50 --set eps_cap=24/255 \
        --set 'method_settings.eot=[gaussian, downsample, augment]' --tag i22_em_eot \
        --result-tag i22_em_eot_seed$s --audit-seed $s
  done
  $PY benchmarks/efficacy.py --task brats_core --victims unet3d --defenses none --epochs 30 --method umed \
      --tag i22_mark_key1 --result-tag i22_mark_unet3d
  $PY benchmarks/phantom_seeds.py --designs mark,prior,learn --tag i22  # synthetic CT phantoms, 3 seeds
  for d in augment,downsample gaussian,median; do  # the mark of seed 1 against the ordinary pipeline
    $seeds --method umed --tag i22_mark_key1 --result-tag "i22_mark_seed1_${d/,/_}" --audit-seed 1 --defenses $d
  done
  for k in 0 2; do  # the other two keys' protections, audit seeds 1 and 2
    s=$(( k == 0 ? 1 : 2 ))
    $PY benchmarks/efficacy.py --task brats_core --victims unet3d --defenses none --epochs 30 --method umed \
        --tag i22_mark_key$k --result-tag i22_mark_unet3d_seed$s --audit-seed $s
  done
fi
if [[ $part == screen22 ]]; then
  # issue 22: the screen of 15 designs, 2 victim seeds, no defense and nnU-Net's augmentation (docs/research.md,
  # session 7; about 1.5 core-hours), and the learned perturbations' distance from the fixed patterns
  for s in 0 1; do
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_learn_s$s \
        --designs umed_learn,umed_learn_nocdc,umed_learn_prior,umed_learn_eot
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_base_s$s \
        --designs mark_edge0,mark_edge1,em_eot,umed_prior_only,em
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_more_s$s \
        --designs mark_edge2,mark_edge3,umed_learn_young,umed_learn_gain1,ckb1,step
  done
  for v in segresnet basicunet attentionunet; do  # the other 2D victims, no defense
    for s in 0 1; do
      $PY benchmarks/research/screen.py --defenses none --set seed=$s --set victim=$v \
          --tag i22_victims_${v}_s$s --designs mark_edge0,umed_prior_only,umed_learn
    done
  done
  $PY benchmarks/research/learned_distance.py umed_prior_only umed_learn umed_learn_nocdc umed_learn_prior \
      umed_learn_gain1 umed_learn_eot umed_learn_young em em_eot --pair umed_learn,umed_learn_nocdc \
      --pair umed_learn,umed_learn_eot --tag i22
fi
if [[ $part == tile22 ]]; then
  # issue 22, session 8: the learned 3D tile (--method tile) screened with two seeds (none, augment), then judged by
  # the 3D UNet (30 epochs, batch 2); the keyed mark's full audit for the other 2D victims (seed 0); key versus seed
  # (keys 0 and 1 at audit seed 2, where key 2 failed). About 3 core-hours. Then: python benchmarks/seeds.py
  for s in 0 1; do
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_tile_dc_s$s \
        --designs tile3d_dc,tile3d_flat_dc,tile2d_dc
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_tile_s$s \
        --designs tile3d,tile3d_flat,tile2d
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_tile_trigger_s$s \
        --designs tile2d_trigger,tile3d_trigger
    $PY benchmarks/research/screen.py --defenses none,augment --set seed=$s --tag i22_tile_p4_s$s --designs tile3d_p4
  done
  t3="--task brats_core --victims unet3d --defenses none --epochs 30 --method tile \
    --config umed/configs/methods/tile.yaml --target-psnr 50 --set eps_cap=24/255"
  t16="--set method_settings.period=16 --set method_settings.depth=4 --set method_settings.train_steps=300 \
    --set method_settings.reinit_every=50 --set method_settings.pattern_lr=0.05"  # the first settings (tile3d)
  for s in 0 1; do
    $PY benchmarks/efficacy.py $t3 $t16 --tag i22_tile3d --result-tag i22_tile3d_unet3d_seed$s --audit-seed $s
  done
  for s in 0 1 2; do  # the shipped tile settings (4x4x2; tile3d_p4)
    $PY benchmarks/efficacy.py $t3 --tag i22_tile3d_p4 --result-tag i22_tile3d_p4_unet3d_seed$s --audit-seed $s
  done
  for s in 0 1; do  # the shipped tile under the ordinary pipeline: 2D screen, and the 3D UNet (not yet run)
    $PY benchmarks/research/screen.py --defenses downsample,gaussian,median --set seed=$s \
        --tag i22_tile_p4_filters_s$s --designs tile3d_p4
  done
  for d in augment downsample gaussian median; do
    $PY benchmarks/efficacy.py $t3 --tag i22_tile3d_p4 --result-tag i22_tile3d_p4_unet3d_seed2_$d --audit-seed 2 \
        --defenses $d
  done
  # the tile and a keyed mark together (the mark at half the energy: a key file with share 0.5), 2D and 3D UNet
  mkdir -p benchmarks/runs/keys  # an existing key file is kept (new-key refuses to overwrite it)
  [[ -f benchmarks/runs/keys/i22_tile_mark.json ]] || .venv/bin/umed verify new-key --out benchmarks/runs/keys/i22_tile_mark.json
  $PY -c "import json,sys; p=sys.argv[1]; d=json.load(open(p)); d['share']=0.5; json.dump(d, open(p, 'w'))" \
      benchmarks/runs/keys/i22_tile_mark.json
  both="--task brats_core --defenses none --method tile --config umed/configs/methods/tile.yaml --target-psnr 50 \
    --set eps_cap=24/255 --set mark=true --set key_out=benchmarks/runs/keys/i22_tile_mark.json --tag i22_tile_mark"
  for s in 0 1 2; do
    $PY benchmarks/efficacy.py $both --victims unet --epochs 10 --result-tag i22_tile_mark_seed$s --audit-seed $s
    $PY benchmarks/efficacy.py $both --victims unet3d --epochs 30 --result-tag i22_tile_mark_unet3d_seed$s \
        --audit-seed $s
  done
  for v in attentionunet basicunet segresnet; do
    $PY benchmarks/efficacy.py --task brats_core --victims $v --defenses none --epochs 10 --method umed \
        --tag i22_mark_key0 --result-tag i22_mark_${v}_seed0 --audit-seed 0
  done
  for k in 0 1; do
    $seeds --method umed --tag i22_mark_key$k --result-tag i22_mark_key${k}_seed2 --audit-seed 2
  done
fi
if [[ $part == all || $part == speed ]]; then
  # issue 12: the first run with the shipped defaults; issue 15: applying a fitted protector (ratio to plain I/O,
  # peak memory, workers). Timings: run on an idle machine.
  $PY benchmarks/first_run.py
  $PY benchmarks/protect_speed.py
  $PY benchmarks/protect_speed.py --mark
fi
