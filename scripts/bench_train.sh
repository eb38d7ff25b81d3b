#!/usr/bin/env bash
# Training targets on this machine: recipe defaults, 5,000 MNIST training digits, official test set.
#   scripts/bench_train.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/mnist}
out=$(mktemp -d)
for model in mnist_cnn lenet; do
    start=$(date +%s.%N)
    .venv/bin/kit train --model "$model" --dataset mnist --data-dir "$DATA" --out "$out/$model" --json > "$out/$model.json"
    end=$(date +%s.%N)
    python3 - "$out/$model.json" "$model" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
print(f"{sys.argv[2]:10} wall {float(sys.argv[4]) - float(sys.argv[3]):5.1f} s | epochs {len(m)} | "
      f"final test acc {m[-1]['test_acc']:.2%} | best {r['best_test_acc']:.2%} (epoch {r['best_epoch']})")
PY
done
rm -rf "$out"
