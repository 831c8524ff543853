"""Out-of-fold probabilities from short fine-tunes (`paretune audit --mode finetune`).

Each fold is an ordinary run of the user's config (same model, method and training settings)
on the other folds' rows, scored on its own; the runs live in a temporary folder and are removed.
Slower than the embedding classifier by the cost of k trainings, and closer to what the real
training will believe about each row. `--set training.epochs=1` keeps it quick.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from paretune.audit.labels import fold_splitter
from paretune.audit.rows import AuditData
from paretune.config import Config, config_from_dict
from paretune.engine.evaluate import predict_outputs
from paretune.predictor import Predictor
from paretune.runner import finetune


def finetune_probs(config: Config, data: AuditData, folds: int, seed: int) -> np.ndarray:
    rows = data.train
    targets = np.asarray(rows.targets, dtype=np.int64)
    names = list(data.task.label_names)
    probs = np.zeros((len(targets), len(names)))
    splits = list(fold_splitter(targets, folds, seed).split(np.zeros(len(targets)), targets))
    with tempfile.TemporaryDirectory(prefix="paretune-audit-") as scratch:
        for k, (fit_rows, held_rows) in enumerate(tqdm(splits, desc="fine-tune folds", unit="fold")):
            folder = Path(scratch) / f"fold-{k}"
            folder.mkdir()
            files = {part: _write_jsonl(folder / f"{part}.jsonl", rows.texts, targets, names, index)
                     for part, index in (("train", fit_rows), ("validation", held_rows))}
            run = finetune(_fold_config(config, files, folder / "run", names))
            predictor = Predictor.load(run.path)
            held = [rows.examples[i] for i in held_rows]
            encoded = predictor.task.encode(held, None, predictor.tokenizer, predictor.max_length)
            outputs, _ = predict_outputs(predictor.model, predictor.task, encoded, 64, predictor.pad_id,
                                         predictor.device, labels=False)
            probs[held_rows] = np.stack(outputs)
    return probs


def _write_jsonl(path: Path, texts: list[str], targets: np.ndarray, names: list[str], index) -> str:
    path.write_text("".join(json.dumps({"text": texts[i], "label": names[targets[i]]}) + "\n" for i in index))
    return str(path)


def _fold_config(config: Config, files: dict[str, str], out: Path, names: list[str]) -> Config:
    raw = config.model_dump(mode="json")
    raw["data"].update({"train": files["train"], "validation": files["validation"], "test": None, "format": "jsonl",
                        "text_column": "text", "label_column": "label", "max_train_rows": None})
    raw["task"]["labels"] = names  # every fold keeps the same label order as the audit
    raw["training"].update({"save_every": 10**9, "early_stopping": None})
    raw["output"] = {"dir": str(out)}
    raw["tracking"] = {"backends": []}
    return config_from_dict(raw)
