"""An ONNX Runtime session behind the one call the prediction path makes: `model(...).logits`.

`predict_outputs` (and so the Predictor, the server and bench-infer) calls the model with
input_ids and attention_mask and reads `.logits`; this module answers that call from an ONNX
Runtime session, so an exported run predicts through exactly the same code as a PyTorch one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paretune.errors import ParetuneError

log = logging.getLogger("paretune")

INPUTS = ("input_ids", "attention_mask")


@dataclass
class OrtOutput:
    logits: torch.Tensor


def cuda_available() -> bool:
    try:
        import onnxruntime
    except ImportError:  # loading then says how to install it
        return False

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def make_session(path: Path, device: torch.device | None = None):
    try:
        import onnxruntime
    except ImportError:
        raise ParetuneError("ONNX models need onnxruntime: pip install 'paretune[onnx]'") from None
    options = onnxruntime.SessionOptions()
    # As many threads as torch uses, so ONNX and PyTorch runs compare on equal terms (and the
    # OMP_NUM_THREADS a user set holds for both).
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device is not None and torch.device(device).type == "cuda":
        providers = ["CUDAExecutionProvider", *providers]
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


class OrtModel(torch.nn.Module):
    """Duck-types a transformers classification model for prediction (not for training)."""

    def __init__(self, path: Path, config, device: torch.device | None = None):
        super().__init__()
        self.path, self.config = Path(path), config
        if not self.path.is_file():
            raise ParetuneError(f"{self.path} is missing: the ONNX run folder is incomplete")
        self.session = make_session(self.path, device)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, **_) -> OrtOutput:
        if pixel_values is not None:  # an image model: pixels as float32, in the default layout
            feeds = {"pixel_values": pixel_values.detach().cpu().float().contiguous().numpy()}
            (logits,) = self.session.run(["logits"], feeds)
            return OrtOutput(logits=torch.from_numpy(logits).to(pixel_values.device))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        given = {"input_ids": input_ids, "attention_mask": attention_mask}
        feeds = {name: given[name].detach().cpu().numpy().astype(np.int64) for name in self.input_names}
        (logits,) = self.session.run(["logits"], feeds)
        return OrtOutput(logits=torch.from_numpy(logits).to(input_ids.device))
