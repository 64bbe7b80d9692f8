#!/usr/bin/env bash
# GPU smoke test for a machine with one CUDA device: a one-process NCCL group (torchrun) through
# Swin pre-training with validation, a fine-tuning run and a segmentation run on the sample data,
# then a check that distributed evaluation counted every test patch exactly once.
#
#   benchmarks/gpu_smoke.sh [OUT]        (default OUT: runs/gpu_smoke; about 2-3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
OUT=${1:-runs/gpu_smoke}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this smoke test needs a GPU')"
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" -m data.sample --root "$OUT/data" > /dev/null
run() { "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 "$@"; }

echo ">>> Swin pre-training with validation (NCCL)"
run train_d_swin_backbone.py --train_dir "$OUT/data" --val_dir "$OUT/data" --epochs 2 -b 8 \
    --device cuda --workers 2 --output_dir "$OUT/swin" 2>&1 | tee "$OUT/swin.log"
grep -q "process group: nccl" "$OUT/swin.log"

echo ">>> fine-tuning, single-label (NCCL)"
run train_evaluation.py --model DoubleSwinTransformerDownstream --checkpoint "$OUT/swin/checkpoint_last.pth" \
    --finetuning --target dfc_label --train_dir "$OUT/data" --epochs 2 --batch_size 8 --device cuda \
    --workers 2 --output_dir "$OUT/finetune" 2>&1 | tee "$OUT/finetune.log"

echo ">>> segmentation (NCCL)"
run train_evaluation.py --model DoubleSwinTransformerSegmentation --checkpoint "$OUT/swin/checkpoint_last.pth" \
    --target dfc --train_dir "$OUT/data" --epochs 1 --batch_size 4 --device cuda --workers 2 \
    --output_dir "$OUT/segmentation" 2>&1 | tee "$OUT/segmentation.log"

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from data import DFCDataset
out = Path(sys.argv[1])
test = DFCDataset(out / "data", mode="test", image_px_size=224)
labelled = sum(int(test[i]["dfc_label"]) != 255 for i in range(len(test)))
scores = json.loads((out / "finetune" / "results.json").read_text())["scores"]
counted = sum(map(sum, scores["confusion_matrix"]))
print(f"labelled test patches: {labelled}; counted by distributed evaluation: {counted}")
assert counted == labelled, "distributed evaluation lost or duplicated test patches"
print("GPU smoke test passed")
PY
