#!/usr/bin/env bash
# DFC2020 single-label classification: self-supervised dual ResNet50, linear evaluation (backbone frozen).
source "$(dirname "$0")/../../../common.sh"
ckpt=$(checkpoint RESNET50_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc_label --model DoubleResNetSimCLRDownstream --base_model resnet50 --no-finetuning --checkpoint "$ckpt" "$@"
