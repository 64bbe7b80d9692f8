#!/usr/bin/env bash
# DFC2020 segmentation: dual Swin-T + SwinUNet decoders trained from scratch.
source "$(dirname "$0")/../common.sh"
run_eval --target dfc --model DoubleSwinTransformerSegmentation --finetuning "$@"
