"""TensorBoard event files, written with tensorboardX (or torch's writer when `tensorboard` is
installed). A sweep's variants go in sub-folders of the sweep's folder: `DIR/<sweep>/<variant>`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paretune.tracking.base import Backend, Where, flatten


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter


class TensorBoardTracker:
    def __init__(self, where: Where):
        self.logdir = where.dir / "tensorboard" / (where.group or "") / where.run_name
        self.writer = _writer_class()(str(self.logdir))  # both writers take the folder first

    def params(self, params: dict[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in sorted(flatten(params).items()))
        self.writer.add_text("config", text, 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def artifact(self, path: Path) -> None:
        # TensorBoard has no files: text files are shown as text, JSON pretty-printed, others named.
        if path.suffix not in (".md", ".json", ".txt", ".yaml"):
            self.writer.add_text(path.name, f"file: {path.resolve()}", 0)
            return
        body = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            body = "    " + json.dumps(json.loads(body), indent=1).replace("\n", "\n    ")
        self.writer.add_text(path.name, body, 0)

    def close(self, failed: bool = False) -> None:
        self.writer.flush()
        self.writer.close()


BACKEND = Backend("tensorboard", "tensorboardX", TensorBoardTracker, "pip install tensorboardX")
