#!/usr/bin/env bash
# DFC2020 multi-label classification: self-supervised dual Swin-T, fine-tuned.
# Flags of the original's swin_t_finetuned_multi.sh (HSG-AIML/SSLTransformerRS); not passed: --wandb_project.
source "$(dirname "$0")/../../../common.sh"
ckpt=$(checkpoint SWIN_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc_multilabel_one_hot --model DoubleSwinTransformerDownstream --finetuning --learning_rate 3e-06 --batch_size 32 --seed 44 --image_px_size 224 --checkpoint "$ckpt"
