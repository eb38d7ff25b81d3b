"""Runs an ONNX file's batches in a pinned onnxruntime, apart from kit (numpy and onnxruntime
only): ``python -S ort_child.py SITE JOB`` with ``SITE`` the pinned packages' directory and
``JOB`` a JSON file naming the model, the input batches (raw float32 files) and an output
directory. Answers ``result.json`` in that directory: every output of every batch as a raw
file, or ``{"error": ...}`` with onnxruntime's own words."""

import json
import sys


def main() -> None:
    site, job_path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, site)
    with open(job_path) as f:
        job = json.load(f)
    result: dict = {"version": None}  # type: ignore[type-arg]
    try:
        import numpy as np
        import onnxruntime as ort

        result["version"] = ort.__version__
        session = ort.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        answers = []
        for i, batch in enumerate(job["batches"]):
            x = np.fromfile(batch["file"], dtype="<f4").reshape(batch["shape"])
            outputs = []
            for k, y in enumerate(session.run(None, {name: x})):
                y = np.ascontiguousarray(y)
                path = f"{job['out_dir']}/out-{i}-{k}.bin"
                y.tofile(path)
                outputs.append({"file": path, "dtype": y.dtype.str, "shape": list(y.shape)})
            answers.append(outputs)
        result["batches"] = answers
    except Exception as exc:  # onnxruntime's words go back to kit, which explains them
        result["error"] = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
    with open(f"{job['out_dir']}/result.json", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
