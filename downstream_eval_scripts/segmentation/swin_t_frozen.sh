#!/usr/bin/env bash
# DFC2020 segmentation: self-supervised dual Swin-T encoders frozen, SwinUNet decoders trained.
source "$(dirname "$0")/../common.sh"
ckpt=$(checkpoint SWIN_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc --model DoubleSwinTransformerSegmentation --no-finetuning --checkpoint "$ckpt" "$@"
