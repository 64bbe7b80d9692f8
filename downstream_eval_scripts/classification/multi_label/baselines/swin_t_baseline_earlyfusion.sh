#!/usr/bin/env bash
# DFC2020 multi-label classification: Swin-T supervised baseline, early fusion (15-band input).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_multilabel_one_hot --model SwinBaseline --finetuning "$@"
