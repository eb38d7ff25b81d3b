#!/usr/bin/env bash
# Download kit's pure-Python dependencies as Python 3.12 wheels into .gpu-wheels/ (ignored by
# git) so scripts/gpu_check.sh can install them on a GPU machine without registry access.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q -d .gpu-wheels --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    click starlette 'uvicorn[standard]>=0.52' prometheus-client safetensors tqdm matplotlib pillow \
    pyarrow pyspng
du -sh .gpu-wheels
