#!/usr/bin/env bash
# DFC2020 single-label classification: Swin-T supervised baseline, early fusion (15-band input).
# Flags of the original's swin_t_baseline_single_earlyfusion.sh (HSG-AIML/SSLTransformerRS); not passed: --checkpoint (ignored by its baselines).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model SwinBaseline --s1_input_channels 2 --s2_input_channels 13 --finetuning --learning_rate 3e-07 --seed 44 --image_px_size 224
