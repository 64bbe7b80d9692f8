# Sourced by every evaluation script: paths from the environment, one way to run.
#
#   DFC_ROOT             DFC2020 root (ROIs0000_validation, ROIs0000_test)      required
#   SWIN_CHECKPOINT      published swin_t.pth (or one from train_d_swin_backbone.py)   SSL Swin runs
#   RESNET50_CHECKPOINT  published resnet50.pth (or one from train_resnet_backbone.py) SSL ResNet runs
#   CHECKPOINT           overrides either checkpoint for a single run
#   OUTPUT_ROOT          where run folders go                       (default: runs/eval)
#   PYTHON               interpreter           (default: .venv/bin/python if present, else python3)
#   EPOCHS, BATCH_SIZE, NUM_WORKERS   optional overrides (e.g. EPOCHS=1 for a smoke run)
#   REPRODUCE_ORIGINAL   1: pass --reproduce_original (the original code's behaviour where the
#                        project fixes it; see train_evaluation.py --help)   (default: unset, off)
# Each script passes the flags of the paper's script for its setting (HSG-AIML/SSLTransformerRS,
# downstream_eval_scripts/); the overrides above come after them, and any extra arguments of
# a script come last, so they win over both.
set -euo pipefail

# The calling script's own arguments (`source` without arguments keeps them); run_eval adds them.
SCRIPT_ARGS=("$@")

EVAL_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$EVAL_SCRIPTS_DIR/.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
OUTPUT_ROOT=${OUTPUT_ROOT:-runs/eval}

: "${DFC_ROOT:?is not set: export DFC_ROOT=/path/to/dfc2020 (the folder holding ROIs0000_validation and ROIs0000_test)}"
if [[ ! -d "$DFC_ROOT" ]]; then
  echo "error: DFC_ROOT=$DFC_ROOT is not a folder" >&2
  exit 2
fi

# checkpoint VAR: the path in $CHECKPOINT or in $VAR, which must exist.
checkpoint() {
  local var=$1 path
  path=${CHECKPOINT:-${!var:-}}
  if [[ -z "$path" ]]; then
    echo "error: set $var (or CHECKPOINT) to the pre-trained checkpoint for this run" >&2
    exit 2
  fi
  if [[ ! -f "$path" ]]; then
    echo "error: checkpoint $path (from \$$var or \$CHECKPOINT) does not exist" >&2
    exit 2
  fi
  echo "$path"
}

# run_eval FLAGS...: train_evaluation.py with the run named after the calling script:
# FLAGS (the setting), then the overrides from the environment, then the script's arguments.
run_eval() {
  local script name extra=()
  script=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)/$(basename "${BASH_SOURCE[1]}" .sh)
  name=${script#"$EVAL_SCRIPTS_DIR"/}
  [[ -n "${EPOCHS:-}" ]] && extra+=(--epochs "$EPOCHS")
  [[ -n "${BATCH_SIZE:-}" ]] && extra+=(--batch_size "$BATCH_SIZE")
  [[ -n "${NUM_WORKERS:-}" ]] && extra+=(--num_workers "$NUM_WORKERS")
  [[ "${REPRODUCE_ORIGINAL:-0}" == 1 ]] && extra+=(--reproduce_original)
  cd "$REPO_ROOT"
  echo ">>> $name"
  "$PYTHON" train_evaluation.py --train_dir "$DFC_ROOT" --val_dir "$DFC_ROOT" \
    --output_dir "$OUTPUT_ROOT/$name" --run_name "$(basename "$name")" "$@" "${extra[@]}" "${SCRIPT_ARGS[@]}"
}
