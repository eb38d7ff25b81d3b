"""What each onnxruntime release really reads: the highest ONNX IR version and ai.onnx opset
it loads, measured in that release itself (installed into kit's cache as ``--runtime
onnxruntime==X`` installs it). The source of ``kit.compat.ORT_READS`` for releases newer than
onnxruntime's own compatibility table.

    python scripts/probe_ort.py 1.16.3 1.21.0 1.22.0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
from _bench import env_info
from onnx import TensorProto, helper

from kit.cache import install_onnxruntime

IRS = range(7, 16)
OPSETS = range(13, 31)

_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import onnxruntime as ort
loads = {}
for path in json.loads(sys.argv[2]):
    try:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        loads[path] = True
    except Exception:
        loads[path] = False
print(json.dumps({"version": ort.__version__, "loads": loads}))
"""


def _model(folder: Path, ir: int, opset: int) -> str:
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    path = folder / f"ir{ir}-opset{opset}.onnx"
    onnx.save(model, str(path))
    return str(path)


def probe(version: str) -> dict[str, object]:
    site = install_onnxruntime(version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        irs = {ir: _model(folder, ir, 13) for ir in IRS}
        opsets = {o: _model(folder, 8, o) for o in OPSETS}
        paths = [*irs.values(), *opsets.values()]
        done = subprocess.run(
            [sys.executable, "-S", "-E", "-c", _CHILD, str(site), json.dumps(paths)],
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    loads = answer["loads"]
    return {
        "onnxruntime": answer["version"],
        "max_ir": max((ir for ir, p in irs.items() if loads[p]), default=None),
        "max_opset": max((o for o, p in opsets.items() if loads[p]), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+")
    args = parser.parse_args()
    print(
        f"# probe_ort ({env_info()}): IR {IRS.start}-{IRS.stop - 1}, opset {OPSETS.start}-{OPSETS.stop - 1}"
    )
    for version in args.versions:
        print(json.dumps(probe(version)), flush=True)


if __name__ == "__main__":
    main()
