#!/usr/bin/env bash
# DFC2020 single-label classification: ResNet50 supervised baseline, early fusion (15-band input).
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model resnet50 --base_model resnet50 --finetuning "$@"
