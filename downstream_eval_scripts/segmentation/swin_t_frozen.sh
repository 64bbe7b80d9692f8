#!/usr/bin/env bash
# DFC2020 segmentation: self-supervised dual Swin-T encoders frozen, SwinUNet decoders trained.
# This project's addition: the original has no segmentation scripts; the flags are those of its
# Swin-T SSL classification scripts (lr 3e-06, batch 32, seed 44, 224 px).
source "$(dirname "$0")/../common.sh"
ckpt=$(checkpoint SWIN_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc --model DoubleSwinTransformerSegmentation --no-finetuning --learning_rate 3e-06 --batch_size 32 --seed 44 --image_px_size 224 --checkpoint "$ckpt"
