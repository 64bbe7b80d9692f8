#!/usr/bin/env bash
# DFC2020 multi-label classification: self-supervised dual Swin-T, linear evaluation (backbone frozen).
source "$(dirname "$0")/../../../common.sh"
ckpt=$(checkpoint SWIN_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc_multilabel_one_hot --model DoubleSwinTransformerDownstream --no-finetuning --checkpoint "$ckpt" "$@"
