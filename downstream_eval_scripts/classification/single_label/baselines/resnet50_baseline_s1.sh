#!/usr/bin/env bash
# DFC2020 single-label classification: ResNet50 supervised baseline, Sentinel-1 only.
# Flags of the original's resnet50_baseline_single_s1.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines), --wandb_project.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model resnet50 --s1_input_channels 2 --s2_input_channels 0 --finetuning --learning_rate 3e-06 --seed 44 --image_px_size 224
