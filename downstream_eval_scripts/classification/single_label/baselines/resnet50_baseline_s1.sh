#!/usr/bin/env bash
# DFC2020 single-label classification: ResNet50 supervised baseline, Sentinel-1 only.
source "$(dirname "$0")/../../../common.sh"
run_eval --target dfc_label --model resnet50 --base_model resnet50 --s2_input_channels 0 --finetuning "$@"
