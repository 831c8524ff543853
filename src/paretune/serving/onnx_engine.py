"""ONNX Runtime as the CPU engine of `paretune serve`, also for runs stored as PyTorch weights.

On a CPU, ONNX Runtime runs a MiniLM-sized encoder in about two thirds of PyTorch's time per text
(one thread, SST-2 sentences in length-sorted groups of 4), and its per-call overhead is a few
Python calls instead of a walk over every module of the model. So, with `--engine auto` (the
default), a run whose model is PyTorch text classification, regression or NER on a CPU is exported
once at start-up (the TorchScript exporter: seconds, not the dynamo exporter's minutes) into a
folder the server deletes when it stops; nothing is written into the run folder. The export is
used only if ONNX Runtime gives the same logits as PyTorch on texts of mixed lengths (padding
included) within the limit `paretune compress -m onnx` holds exports to; otherwise the server says
why in its log and serves with PyTorch. `--engine onnxruntime` makes any such failure an error,
`--engine torch` skips all this.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from paretune.compression.onnx import PARITY_LIMIT, TEXT_INPUTS, LogitsOnly
from paretune.errors import ParetuneError
from paretune.stored.ort_model import OrtModel

log = logging.getLogger("paretune.serve")

ONNX_FILE = "model.onnx"
PARITY_TEXTS = ("a", "A short sentence to warm the model up.",
                "A longer sentence, so that the batch holds padding and the graph must respect the mask.")


def onnx_for_serving(predictor, engine: str, folder: Path) -> Path | None:
    """An ONNX copy of `predictor`'s model in `folder` to serve with, or None to serve as it is."""
    if engine == "torch" or isinstance(predictor.model, OrtModel):
        return None
    why_not = _unsupported(predictor)
    if why_not is None:
        try:
            path = export(predictor, folder / ONNX_FILE)
            check_parity(predictor, path)
            return path
        except Exception as err:  # any failure leaves the PyTorch model serving
            why_not = f"exporting to ONNX failed ({type(err).__name__}: {str(err)[:300]})"
            log.debug("ONNX export for serving failed", exc_info=True)
    if engine == "onnxruntime":
        raise ParetuneError(f"--engine onnxruntime: {why_not}")
    log.info("serving with PyTorch: %s", why_not)
    return None


def _unsupported(predictor) -> str | None:
    """Why this model cannot be served through an export at start-up, or None if it can."""
    task = predictor.task
    if str(predictor.device) != "cpu":
        return f"ONNX Runtime is the engine on a CPU; the model is on {predictor.device}"
    if task.generates or task.takes_images or tuple(task.model_inputs) != TEXT_INPUTS:
        return f"the {task.name} task is not exported at start-up"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install 'paretune[onnx]')"
    if any(p.dtype not in (torch.float32,) for p in predictor.model.parameters()):
        return "the model is not float32 (quantized or cast forms stay in PyTorch)"
    return None


def _inputs(predictor, texts) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask of `texts`, padded as the prediction path pads them (the task's collate)."""
    encoded = predictor.task.encode(predictor._examples(texts), None, predictor.tokenizer, predictor.max_length)
    batch = predictor.task.collate(encoded, list(range(len(encoded))), predictor.pad_id)
    return batch["input_ids"], batch["attention_mask"]


def export(predictor, path: Path) -> Path:
    ids, mask = _inputs(predictor, PARITY_TEXTS[1:])  # batch and length above 1: nothing specialised
    wrapper = LogitsOnly(predictor.model).eval()
    token_level = predictor.task.word_level
    axes = {0: "batch", 1: "sequence"}
    for chatty in ("torch.onnx", "torch.export"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about transformers internals
        torch.onnx.export(wrapper, (ids, mask), str(path), dynamo=False, opset_version=17,
                          input_names=list(TEXT_INPUTS), output_names=["logits"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "logits": axes if token_level else {0: "batch"}})
    return path


def check_parity(predictor, path: Path) -> None:
    """Raise unless ONNX Runtime's logits match PyTorch's on texts of mixed lengths."""
    ids, mask = _inputs(predictor, PARITY_TEXTS)
    with torch.no_grad():
        expected = predictor.model(input_ids=ids, attention_mask=mask).logits.float().numpy()
    got = OrtModel(path, predictor.model.config)(input_ids=ids, attention_mask=mask).logits.numpy()
    if expected.ndim == 3:  # token logits: padded positions may differ and do not matter
        keep = mask.numpy().astype(bool)
        expected, got = expected[keep], got[keep]
    difference = float(np.abs(expected - got).max())
    if not difference <= PARITY_LIMIT:
        raise ParetuneError(f"ONNX Runtime's logits differ from PyTorch's by {difference:.2g} "
                            f"(limit {PARITY_LIMIT:g})")
    log.info("serving with ONNX Runtime (exported at start-up; logits within %.1g of PyTorch's)", difference)


def use_onnx(predictor, path: Path) -> None:
    """Swap the predictor's PyTorch model for ONNX Runtime on the exported graph (in a model process)."""
    predictor.model = OrtModel(path, predictor.model.config)
