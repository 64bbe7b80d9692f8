#!/usr/bin/env bash
# DFC2020 single-label classification: self-supervised dual ResNet50, fine-tuned.
# Flags of the original's resnet50_finetuned_single.sh (HSG-AIML/SSLTransformerRS); its --base_mode is --base_model; not passed: --wandb_project.
source "$(dirname "$0")/../../../common.sh"
ckpt=$(checkpoint RESNET50_CHECKPOINT)  # exits with a clear message if unset or missing
run_eval --target dfc_label --model DoubleResNetSimCLRDownstream --base_model resnet50 --finetuning --learning_rate 3e-06 --batch_size 32 --seed 44 --image_px_size 224 --checkpoint "$ckpt"
