"""`paretune export RUN [--merge | --format gguf]`: copy a finished run's adapter or its full model
out, or write a generative run as one GGUF file with an Ollama Modelfile.

How a run's model/ (and adapter/) is stored and loaded lives in `paretune.stored`
(stored/trained.py says which form a trained model gets; stored/gguf_export.py writes GGUF).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from paretune.errors import ParetuneError
from paretune.models import portable_model_id
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.stored import form_of, load_model
from paretune.stored import gguf_export
from paretune.stored.trained import ADAPTER_DIR

NOT_MERGEABLE = (
    "its adapter cannot be folded into the base weights (prompt, prefix and p-tuning add virtual "
    "tokens; bottleneck adapters add non-linear layers)"
)


def finished_run(run_dir: str | Path) -> RunFolder:
    run = RunFolder.open(run_dir)
    if not (run.model_dir / TASK_FILE).is_file():
        raise ParetuneError(f"{run_dir} has no trained model yet: did the run finish?")
    return run


def free_target(target: Path) -> Path:
    if target.exists() and any(target.iterdir()):
        raise ParetuneError(f"{target} already exists and is not empty: choose another --output")
    return target


def export_run(run_dir: str | Path, merge: bool, output: str | Path | None = None) -> Path:
    """Copy a finished run's adapter (default) or merged full model (`merge`) to `output`."""
    run = finished_run(run_dir)
    method = json.loads((run.model_dir / TASK_FILE).read_text()).get("method", "?")
    adapter_dir = run.path / ADAPTER_DIR
    if merge:
        if form_of(run.model_dir).over_base:
            raise ParetuneError(
                f"cannot export {run_dir} merged: method {method} trains an adapter, but {NOT_MERGEABLE}. "
                f"Export the adapter (without --merge), or use the run folder itself with paretune "
                "predict / serve."
            )
        source = run.model_dir
    else:
        if not adapter_dir.is_dir():
            raise ParetuneError(
                f"{run_dir} has no separate adapter: method {method} trains the model's own "
                "weights. Use --merge to export the full model."
            )
        source = adapter_dir
    target = free_target(Path(output) if output else run.path / "export" / ("merged" if merge else "adapter"))
    shutil.copytree(source, target, dirs_exist_ok=True)
    if not merge:  # peft's README template names the base by this machine's path: a real card instead
        from paretune.model_card import write_adapter_card

        write_adapter_card(target, run, f"path/to/{target.name}")
        name_base_portably(target, run)
    return target


def name_base_portably(adapter_dir: Path, run: RunFolder) -> None:
    """peft records the base as the path it was loaded from (for a GGUF base, this machine's
    conversion cache): name it as the model card does, so the folder means something elsewhere."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    if "base_model_name_or_path" in adapter_config:
        adapter_config["base_model_name_or_path"] = portable_model_id(run.read_config().model.name_or_path)
        path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_gguf(run_dir: str | Path, quant: str = "f16", output: str | Path | None = None) -> Path:
    """Write a finished generative run (LoRA merged) as one GGUF file plus an Ollama Modelfile in
    `output` (default RUN/export/gguf-QUANT). Everything that could refuse is checked first."""
    import transformers

    from paretune.stored.gguf_vocab import check_tokenizer
    from paretune.stored.ollama_modelfile import modelfile

    run = finished_run(run_dir)
    gguf_export.check_quant(quant)
    form = form_of(run.model_dir)
    if form.over_base or not form.plain_transformers:
        raise ParetuneError(f"cannot export {run_dir} as GGUF: its model is stored as {form.name} "
                            f"({form.description}); export the run it was made from")
    gguf_export.architecture_of(gguf_export.read_model_config(run.model_dir), str(run_dir))
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.model_dir)
    check_tokenizer(tokenizer)
    target = free_target(Path(output) if output else run.path / "export" / f"gguf-{quant}")
    model = load_model(run.model_dir, transformers.AutoModelForCausalLM)
    if hasattr(model, "merge_and_unload"):  # an unmerged LoRA-family adapter over its base
        model = model.merge_and_unload()
    target.mkdir(parents=True, exist_ok=True)
    gguf_file = gguf_export.write_gguf(model, tokenizer, target / f"{run.path.name}-{quant}.gguf", quant,
                                       run.path.name)
    (target / "Modelfile").write_text(modelfile(tokenizer, gguf_file.name), encoding="utf-8")
    return gguf_file


def export_embedding_table(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the embeddings a run's predictions are ranked against (a knowledge-graph run: every
    entity) as `embeddings.safetensors` (tensor `embeddings`, one row an id, float32) and `ids.json`."""
    from safetensors.numpy import save_file

    from paretune.predictor import Predictor

    predictor = Predictor.load(finished_run(run_dir).path)
    predictor.task.before_predicting(predictor.model, predictor.device, refresh=False)
    table = predictor.task.embedding_table()
    if table is None:
        raise ParetuneError(f"{run_dir}: a {predictor.task.name} run ranks against no embedding table; "
                            "--format embeddings is for runs that do (knowledge-graph completion)")
    ids, embeddings = table
    target = free_target(Path(output) if output else Path(run_dir) / "export" / "embeddings")
    target.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": embeddings.astype("float32")}, str(target / "embeddings.safetensors"),
              metadata={"rows": str(len(ids)), "normalized": "true"})
    (target / "ids.json").write_text(json.dumps(ids))
    return target
