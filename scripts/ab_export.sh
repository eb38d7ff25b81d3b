#!/usr/bin/env bash
# Interleaved A/B of `kit export --model MODEL` between two checkouts (worktrees), wall time:
#   git worktree add /tmp/a f3fa40d && scripts/ab_export.sh /tmp/a . alexnet 2
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); MODEL=${3:-alexnet}; ROUNDS=${4:-2}
# the venv's python by its own path: realpath would follow its link out of the venv
PYTHON=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    dir=$([ "$side" = A ] && echo "$A" || echo "$B")
    out=$(mktemp -d)
    start=$(date +%s.%N)
    (cd "$dir" && PYTHONPATH="$dir" "$PYTHON" -m kit export --model "$MODEL" --out "$out" > /dev/null)
    end=$(date +%s.%N)
    echo "round $round: $side $(echo "$end - $start" | bc) s"
    rm -rf "$out"
  done
done
