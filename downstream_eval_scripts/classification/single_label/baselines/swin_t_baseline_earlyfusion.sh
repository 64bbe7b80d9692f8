#!/usr/bin/env bash
# DFC2020 single-label classification: Swin-T supervised baseline, early fusion (15-band input).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model SwinBaseline --finetuning "$@"
