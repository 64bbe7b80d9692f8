#!/usr/bin/env bash
# Run every evaluation script (or those whose path matches PATTERN) and build the results table.
#
#   DFC_ROOT=... SWIN_CHECKPOINT=... RESNET50_CHECKPOINT=... ./run_all.sh [PATTERN] [-- extra args]
#   EPOCHS=1 ./run_all.sh ssl            # a smoke run of the self-supervised settings
# A failing run is reported and the others go on; the exit status is non-zero if any failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pattern=${1:-}
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
OUTPUT_ROOT=${OUTPUT_ROOT:-runs/eval}
export OUTPUT_ROOT
failed=()
while IFS= read -r script; do
  if [[ -n "$pattern" && "$script" != *$pattern* ]]; then continue; fi
  "$script" "$@" || failed+=("${script#"$here"/}")
done < <(find "$here/classification" "$here/segmentation" -name '*.sh' | sort)
cd "$here/.."
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
"$PYTHON" -m utils.results "$OUTPUT_ROOT" --out "$OUTPUT_ROOT/results.md"
if [[ ${#failed[@]} -gt 0 ]]; then
  printf 'failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
