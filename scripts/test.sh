#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, format, types, import layers, then every test
# (slow ones too).
# Run from the repository root with the virtual environment's tools on PATH or in .venv/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[ -x "$bin/python" ] || bin=$(dirname "$(command -v python)")

# The second runtimes' tests need Node.js (for onnxruntime-node) and a system Chromium (for
# the page); install what is missing where apt-get can, else the tests fail saying what.
scripts/install_test_tools.sh || echo "could not install every test tool; see above" >&2
# onnxruntime-node and onnxruntime-web's files go into kit's cache (kit doctor lists them)
"$bin/kit" doctor --install all || true

"$bin/ruff" check kit architectures tests scripts
"$bin/ruff" format --check kit architectures tests scripts
"$bin/mypy" kit architectures
"$bin/lint-imports"  # the layers of docs/DESIGN.md, as contracts in pyproject.toml

set +e
# Two processes, a test file each at a time (module fixtures start once); KIT_TEST_WORKERS=0
# runs the suite in this process, in order.
"$bin/python" -m pytest -n "${KIT_TEST_WORKERS:-2}" --dist loadfile "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here, not a success." >&2
    exit 1
fi
exit "$code"
