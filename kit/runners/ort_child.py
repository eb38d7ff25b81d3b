"""Runs an ONNX file in a pinned onnxruntime, apart from kit (numpy and onnxruntime only):
``python -S ort_child.py SITE MODEL OUT_DIR`` with ``SITE`` the pinned packages' directory.
It loads the model once, then answers batches as they come until its stdin closes (the
protocol of ``kit._child``): each stdin line names a raw float32 file and its shape;
each stdout line lists every output written as a raw file into ``OUT_DIR``, or
``{"error": ...}`` with onnxruntime's own words."""

import json
import sys


def _load(site, model):  # type: ignore[no-untyped-def]
    sys.path.insert(0, site)
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name


def _answer(session, name, request, out_dir):  # type: ignore[no-untyped-def]
    import numpy as np

    x = np.fromfile(request["file"], dtype="<f4").reshape(request["shape"])
    outputs = []
    for k, y in enumerate(session.run(None, {name: x})):
        y = np.ascontiguousarray(y)
        path = f"{out_dir}/out-{request['id']}-{k}.bin"
        y.tofile(path)
        outputs.append({"file": path, "dtype": y.dtype.str, "shape": list(y.shape)})
    return {"outputs": outputs}


def _words(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main() -> None:
    site, model, out_dir = sys.argv[1:4]
    try:
        loaded, error = _load(site, model), None
    except Exception as exc:  # onnxruntime's words go back to kit, which explains them
        loaded, error = None, _words(exc)
    for line in sys.stdin:
        try:
            if loaded is None:
                reply = {"error": error}
            else:
                session, name = loaded
                reply = _answer(session, name, json.loads(line), out_dir)
        except Exception as exc:
            reply = {"error": _words(exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
