"""`paretune export RUN [--merge] [--format gguf --quant Q] [--output DIR]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError
from paretune.stored.gguf_export import QUANTS

FORMATS = ("safetensors", "gguf", "embeddings")


def export(
    run: Path = typer.Argument(..., help="Finished run folder written by paretune train."),
    merge: bool = typer.Option(
        False, "--merge",
        help="Write a full model with the adapter folded into its weights; it loads with plain "
             "transformers, no peft needed (LoRA, AdaLoRA, IA3, and full/freeze runs).",
    ),
    export_format: str = typer.Option(
        "safetensors", "--format",
        help="safetensors: the adapter or (--merge) the full model as transformers folders. gguf: a "
             "generative Llama-family run (Llama, SmolLM2, Mistral, Qwen2), LoRA merged, as one .gguf file "
             "for llama.cpp with an Ollama Modelfile beside it. embeddings: the table a knowledge-graph run ranks "
             "(every entity's embedding, embeddings.safetensors + ids.json).",
    ),
    quant: Optional[str] = typer.Option(
        None, "--quant",
        help=f"With --format gguf: the type of the weight matrices, one of {', '.join(QUANTS)} (default f16; "
             "norms stay f32).",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Folder to write; default RUN/export/adapter, RUN/export/merged or RUN/export/gguf-QUANT.",
    ),
) -> None:
    """Copy out a run's adapter alone (small; loads over the base model with peft), a merged model,
    or a GGUF file for llama.cpp and Ollama."""
    from paretune.export import export_gguf, export_run

    if export_format not in FORMATS:
        raise ParetuneError(f"--format: '{export_format}' is not one of {', '.join(FORMATS)}")
    if export_format == "gguf":
        if merge:
            raise ParetuneError("--merge: a GGUF file always holds the merged model; leave --merge out")
        written = export_gguf(run, quant or "f16", output)
        print(f"wrote {written} ({written.stat().st_size / 2**20:.2f} MiB) and {written.parent / 'Modelfile'}; "
              f"run it with: cd {written.parent} && ollama create {run.resolve().name} -f Modelfile")
        return
    if quant is not None:
        raise ParetuneError("--quant: only with --format gguf")
    if export_format == "embeddings":
        from paretune.export import export_embedding_table

        folder = export_embedding_table(run, output)
        print(f"wrote the embedding table to {folder} (embeddings.safetensors, ids.json)")
        return
    folder = export_run(run, merge, output)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"wrote {'merged model' if merge else 'adapter'} to {folder} ({size / 2**20:.2f} MiB)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
