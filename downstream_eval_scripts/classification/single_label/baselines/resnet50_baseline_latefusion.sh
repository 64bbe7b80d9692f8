#!/usr/bin/env bash
# DFC2020 single-label classification: ResNet50 supervised baseline, late fusion (two ResNets, concatenated features).
# Flags of the original's resnet50_baseline_single_latefusion.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines), --wandb_project.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model DualBaseline --base_model resnet50 --finetuning --learning_rate 3e-06 --batch_size 32 --seed 44 --image_px_size 224
