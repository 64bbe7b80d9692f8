#!/usr/bin/env bash
# DFC2020 multi-label classification: self-supervised dual ResNet50, linear evaluation (backbone frozen).
source "$(dirname "$0")/../../../common.sh"
ckpt=$(checkpoint RESNET50_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc_multilabel_one_hot --model DoubleResNetSimCLRDownstream --base_model resnet50 --no-finetuning --checkpoint "$ckpt" "$@"
