#!/usr/bin/env bash
# Training targets on this machine: recipe defaults, 5,000 MNIST training digits, official test set.
#   scripts/bench_train.sh [DATA_DIR] [MODELS...]   (default: the MNIST bundled with kit; mnist_cnn lenet)
# The machine's speed drifts (shared VMs), so a fixed matrix product's GFLOP/s is printed
# before and after: compare wall times only between runs at similar GFLOP/s.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-kit/sample_data/mnist}
shift || true
MODELS=${*:-mnist_cnn lenet}
out=$(mktemp -d)
reference() {
    .venv/bin/python - <<'PY'
import time, torch
a, b = torch.randn(512, 2048), torch.randn(2048, 1024)
torch.mm(a, b)
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 2:
    torch.mm(a, b)
    n += 1
print(f"reference  sgemm 512x2048x1024: {2 * 512 * 2048 * 1024 * n / (time.perf_counter() - start) / 1e9:.0f} GFLOP/s")
PY
}
reference
for model in $MODELS; do
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
reference
rm -rf "$out"
