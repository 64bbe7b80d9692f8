#!/usr/bin/env bash
# DFC2020 single-label classification: Swin-T supervised baseline, late fusion (two Swin-T, concatenated features).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model DualSwinBaseline --finetuning "$@"
