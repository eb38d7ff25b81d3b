#!/usr/bin/env bash
# kit parity --endpoint against a second, independent Open Inference Protocol server:
# MLServer (installed from the package registry into its own virtual environment) with a
# minimal onnxruntime runtime serving exported/mnist_cnn/model.onnx, JSON tensors only.
#
#   scripts/endpoint_mlserver.sh [EXPORT_DIR] [SAMPLES]
#
# Run from the repository root with the README's .venv; needs python3.11 and the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
export_dir=${1:-exported/mnist_cnn}
samples=${2:-10000}
venv=$(realpath -m "${MLSERVER_VENV:-.venv-mlserver}")
[ -x "$venv/bin/mlserver" ] || {
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install -q mlserver onnxruntime numpy
}
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; [ "${KEEP:-}" ] || rm -rf "$work"' EXIT
name=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['model']['name'])" "$export_dir/manifest.json")
mkdir -p "$work/$name"
cp "$export_dir/model.onnx" "$work/$name/model.onnx"
cp scripts/mlserver_runtime.py "$work/$name/runtime.py"
# the model's tensors as the manifest lists them, so the server's metadata can be checked
.venv/bin/python - "$export_dir/manifest.json" "$work/$name/model-settings.json" "$name" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
tensor = lambda t: {"name": t["name"], "datatype": "FP32", "shape": [-1 if isinstance(d, str) else d for d in t["shape"]]}
settings = {
    "name": sys.argv[3],
    "implementation": "runtime.OnnxModel",
    "parameters": {"uri": "./model.onnx"},
    "inputs": [tensor(t) for t in manifest["inputs"]],
    "outputs": [tensor(t) for t in manifest["outputs"]],
}
json.dump(settings, open(sys.argv[2], "w"), indent=2)
PY
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
echo "{\"http_port\": $port, \"grpc_port\": 0, \"metrics_port\": 0, \"parallel_workers\": 0}" > "$work/settings.json"
(cd "$work" && exec "$venv/bin/mlserver" start . > "$work/mlserver.log" 2>&1) &
server=$!
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/v2/models/$name/ready" >/dev/null && break
    kill -0 "$server" 2>/dev/null || break  # it exited: its log says why, below
    sleep 1
done
curl -s "http://127.0.0.1:$port/v2" && echo || { echo "MLServer did not start:"; tail -20 "$work/mlserver.log"; exit 1; }
start=$(date +%s.%N)
set +e
.venv/bin/kit parity "$export_dir" --endpoint "http://127.0.0.1:$port" --samples "$samples"
code=$?
set -e
echo "kit parity --endpoint (MLServer): exit $code, $(echo "$(date +%s.%N) - $start" | bc) s"
exit $code
