#!/usr/bin/env bash
# DFC2020 multi-label classification: Swin-T supervised baseline, Sentinel-2 only.
# Flags of the original's swin_t_baseline_multi_s2.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_multilabel_one_hot --model SwinBaseline --s1_input_channels 0 --s2_input_channels 13 --finetuning --learning_rate 3e-07 --seed 44 --image_px_size 224
