#!/usr/bin/env bash
# DFC2020 single-label classification: Swin-T supervised baseline, Sentinel-2 only.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model SwinBaseline --s1_input_channels 0 --finetuning "$@"
