#!/usr/bin/env bash
# DFC2020 multi-label classification: Swin-T supervised baseline, late fusion (two Swin-T, concatenated features).
# Flags of the original's swin_t_baseline_multi_latefusion.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines), --wandb_project.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_multilabel_one_hot --model DualSwinBaseline --finetuning --learning_rate 3e-07 --batch_size 32 --seed 44 --image_px_size 224
