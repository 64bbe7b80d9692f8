#!/usr/bin/env bash
# DFC2020 multi-label classification: Swin-T supervised baseline, Sentinel-1 only.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_multilabel_one_hot --model SwinBaseline --s2_input_channels 0 --finetuning "$@"
