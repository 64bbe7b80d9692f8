#!/usr/bin/env bash
# DFC2020 single-label classification: Swin-T supervised baseline, late fusion (two Swin-T, concatenated features).
# Flags of the original's swin_t_baseline_single_latefusion.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines), --wandb_project.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model DualSwinBaseline --finetuning --learning_rate 3e-07 --batch_size 32 --seed 40 --image_px_size 224
