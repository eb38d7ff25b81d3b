"""A minimal MLServer runtime serving a model.onnx with onnxruntime (JSON tensors): what
scripts/endpoint_mlserver.sh and scripts/bench_serve_ratio.py copy beside the model."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self.session = ort.InferenceSession(await get_model_uri(self.settings))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request = payload.inputs[0]
        x = NumpyCodec.decode_input(request).astype(np.float32)
        outputs = self.session.run(None, {request.name: x})
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name=o.name, payload=v)
                for o, v in zip(self.session.get_outputs(), outputs, strict=True)
            ],
        )
