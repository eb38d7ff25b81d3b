#!/usr/bin/env bash
# Every CUDA path of kit in one run of a few minutes: CUDA training (AMP) with timing, CUDA
# parity (eager vs ONNX on onnxruntime's CUDA provider), serving through the CUDA provider
# with dynamic batching on and off, and runtime latencies. Prints what it measured; copy the
# output into docs/BENCHMARKS.md.
#
#   scripts/gpu_wheels.sh          # once, on a machine with registry access (if the GPU box has none)
#   scripts/gpu_check.sh           # on the GPU machine, from the repository root
#
# Writes under ${OUT:-/tmp/kit-gpu-check}. Exits non-zero if a CUDA path fell back to the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/kit-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

# kit's pure-Python dependencies, if the machine lacks them and has no registry access.
if ! "$PY" -c "import click, starlette, uvicorn, prometheus_client, safetensors, tqdm, matplotlib, PIL, pyarrow" 2>/dev/null; then
    if [ -d .gpu-wheels ]; then
        "$PY" -m pip install -q --no-index --find-links .gpu-wheels click starlette uvicorn prometheus-client safetensors tqdm matplotlib pillow pyarrow pyspng
    fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# timed LABEL CMD...: run CMD, then print its wall time (no dependency on /usr/bin/time)
timed() {
    local label=$1 start end; shift
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    echo "$label wall time: $("$PY" -c "print(round($end - $start, 2))") s"
}

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY'
import torch, onnxruntime as ort
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("onnxruntime", ort.__version__, "available:", ort.get_available_providers())
import kit.runtime as kr
m = kr.load("exported/mnist_cnn")
print("kit.runtime default provider really running:", m.provider, "io_binding:", m.io_binding)
assert m.provider == "CUDAExecutionProvider", "CUDA provider did not load: onnxruntime fell back to the CPU"
strict = kr.load("exported/mnist_cnn", providers=["CUDAExecutionProvider"])  # ProviderError if not
print("providers=[CUDA] runs on:", strict.provider)
PY
"$PY" -m kit doctor || true  # what each provider really gets (and the JS runtimes, absent there)

DATA=${KIT_DATA_DIR:-kit/sample_data/mnist}
echo "== CUDA training (AMP, channels_last): mnist_cnn, recipe defaults"
if [ -f "$DATA/t10k-images-idx3-ubyte.gz" ]; then
    timed "kit train" "$PY" -m kit train --model mnist_cnn --data-dir "$DATA" --device cuda --out "$OUT/run_mnist"
else
    echo "(no MNIST at $DATA: fake data instead)"
    timed "kit train" "$PY" -m kit train --model mnist_cnn --dataset fake --fake-size 5000 --epochs 2 --device cuda --out "$OUT/run_mnist"
fi
echo "== CUDA training step timing: vgg16_bn, fake data, batch 64"
"$PY" -m kit train --model vgg16_bn --dataset fake --fake-size 512 --num-classes 10 --epochs 1 --batch-size 64 --device cuda --out "$OUT/run_vgg" --json \
    | "$PY" -c "import json,sys; m=json.load(sys.stdin)['metrics'][0]; print(f\"vgg16_bn: 512 images in {m['seconds']:.2f} s ({512/m['seconds']:.0f} img/s incl. eval)\")"

echo "== CUDA parity: alexnet export (eager vs TorchScript, pt2, ONNX on CPU and CUDA providers)"
timed "kit export alexnet" "$PY" -m kit export --model alexnet --out "$OUT/exported" | tee "$OUT/parity_alexnet.txt"
grep -q "^onnx .*CUDAExecutionProvider  " "$OUT/parity_alexnet.txt" || { echo "FAIL: no ONNX row ran on the CUDA provider"; exit 1; }
# --provider cuda: CUDA must really run (exit 2 with the reason otherwise); real digits included
"$PY" -m kit parity exported/mnist_cnn --provider cuda ${KIT_DATA_DIR:+--data-dir "$KIT_DATA_DIR"} | tail -8

echo "== runtime latency, CUDA provider (IOBinding) vs CPU, batch 1 and 32"
"$PY" - "$OUT/exported/alexnet" <<'PY'
import sys, statistics, time, numpy as np, kit.runtime as kr
for name, path in (("mnist_cnn", "exported/mnist_cnn"), ("alexnet", sys.argv[1])):
    for prov in (None, ["CPUExecutionProvider"]):
        m = kr.load(path, providers=prov)
        for b in (1, 32):
            x = np.random.rand(b, *m.input_shape).astype(np.float32)
            for _ in range(20): m.predict(x)
            ts = []
            for _ in range(200 if b == 1 else 50):
                t = time.perf_counter(); m.predict(x); ts.append(time.perf_counter() - t)
            print(f"{name:10} {m.provider:24} batch {b:3}: median {statistics.median(ts)*1e3:8.3f} ms")
PY

echo "== fp16 and int8 variants: made here, timed on CUDA against fp32"
rm -rf "$OUT/mnist_variants" && cp -r exported/mnist_cnn "$OUT/mnist_variants"
"$PY" -m kit quantize "$OUT/mnist_variants" --precision fp16
"$PY" - "$OUT/mnist_variants" <<'PY'
import sys, statistics, time, numpy as np, kit.runtime as kr
for precision in ("fp32", "fp16", "int8"):
    m = kr.load(sys.argv[1], precision=precision, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    for b in (1, 64):
        x = np.random.rand(b, 1, 28, 28).astype(np.float32)
        for _ in range(20): m.predict(x)
        ts = []
        for _ in range(200):
            t = time.perf_counter(); m.predict(x); ts.append(time.perf_counter() - t)
        print(f"mnist_cnn {precision} {m.provider:24} batch {b:3}: median {statistics.median(ts)*1e3:8.3f} ms")
PY

echo "== kit bench: every artifact, CUDA with and without IOBinding, against the CPU peak"
"$PY" -m kit bench "$OUT/mnist_variants" --batch-sizes 1,64 --seconds 1

echo "== kit report: the CUDA column filled by parity on the CUDA provider"
"$PY" -m kit parity "$OUT/mnist_variants" --provider cuda > /dev/null || true  # judged below
"$PY" -m kit report "$OUT/mnist_variants" --json > "$OUT/report.json" || true
"$PY" - "$OUT/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rows = [row for row in report["matrix"]["rows"] if row["file"]]
for row in rows:
    cell = row["cells"]["onnxruntime-cuda"]
    print(f"{row['artifact']:12} onnxruntime CUDA: {cell['status']:8} {cell.get('runtime') or cell['why']}")
sys.exit(0 if rows[0]["cells"]["onnxruntime-cuda"]["status"] == "pass" else 1)
PY

echo "== serving through the CUDA provider: 32 concurrent batch-1 clients, alexnet"
mkdir -p "$OUT/serve" && ln -sfn "$OUT/exported/alexnet" "$OUT/serve/alexnet" && ln -sfn "$PWD/exported/mnist_cnn" "$OUT/serve/mnist_cnn"
"$PY" scripts/bench_server.py --models-dir "$OUT/serve" --model alexnet --clients 32 --seconds 10 --provider cuda
"$PY" scripts/bench_server.py --models-dir "$OUT/serve" --model mnist_cnn --clients 32 --seconds 10 --provider cuda
# two server processes on one GPU, each with its own CUDA context (kit serve --processes)
"$PY" scripts/bench_server.py --models-dir "$OUT/serve" --model mnist_cnn --clients 32 --seconds 10 --provider cuda --processes 2
# ...and their parent, which serves nothing, holds no GPU memory (it checks exports on the CPU)
"$PY" -m kit serve exported/mnist_cnn --provider cuda --processes 2 --port 8123 2> "$OUT/serve/processes.log" &
parent=$!
for _ in $(seq 60); do curl -sf localhost:8123/v2/health/ready > /dev/null && break; sleep 1; done
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | tee "$OUT/serve/gpu_apps.txt"
kill "$parent"; wait "$parent" || true
if [ ! -s "$OUT/serve/gpu_apps.txt" ]; then
    echo "NOT CHECKED: nvidia-smi lists no process (a container's own process ids?)"
elif grep -q "^$parent," "$OUT/serve/gpu_apps.txt"; then
    echo "FAIL: the parent of kit serve --processes holds GPU memory"; exit 1
else
    echo "the parent ($parent) holds no GPU memory; its processes do"
fi
echo "== kit infer through the CUDA provider: the bundled MNIST test set, local engine"
if "$PY" -c "import pyarrow" 2>/dev/null; then
    timed "kit infer --provider cuda" "$PY" -m kit infer exported/mnist_cnn mnist --out "$OUT/infer" --force --provider cuda --json
else
    echo "kit infer NOT RUN: pyarrow is missing here (scripts/gpu_wheels.sh fetches it)"
fi
echo "== done: every CUDA path ran"
