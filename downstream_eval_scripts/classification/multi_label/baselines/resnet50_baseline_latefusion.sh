#!/usr/bin/env bash
# DFC2020 multi-label classification: ResNet50 supervised baseline, late fusion (two ResNets, concatenated features).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_multilabel_one_hot --model DualBaseline --base_model resnet50 --finetuning "$@"
