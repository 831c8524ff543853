"""data.augment.paraphrase: rewrites written once by an instruction model, cached, read in training only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

import paretune
from generation_fixtures import tiny_llama_dir
from paretune.config import config_from_dict
from paretune.data.paraphrase import accepted, first_line, paraphrase_texts
from paretune.data.prepare import prepare_data
from paretune.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_copy_or_a_comment_on_the_text_is_not_a_paraphrase():
    assert accepted("a dull , lifeless plot", "a boring plot with no life in it", 0.3)
    assert not accepted("a dull plot .", "A dull plot", 0.3)  # the same words again
    assert not accepted("kids , spirit", "The movie review is a positive one.", 0.3)  # a comment
    assert not accepted("anything", "", 0.0)
    assert not accepted("brilliant and", "The text is brilliant and a perfect example of creative writing", 0.3)
    assert first_line('\n  "a boring plot"\nThis rewrite keeps the tone.') == "a boring plot"


def test_a_prompt_without_the_text_is_refused(tiny_config):
    tiny_config["data"]["augment"] = {"paraphrase": 0.5, "paraphrase_prompt": "Rewrite it."}
    with pytest.raises(ConfigError, match=r"\{text\}"):
        config_from_dict(tiny_config)


@pytest.fixture(scope="module")
def writer(tmp_path_factory) -> Path:
    """A tiny random Llama with a chat template: its paraphrases are noise, its plumbing is real."""
    return tiny_llama_dir(tmp_path_factory.mktemp("paraphraser"))


def paraphrasing(config: dict, writer: Path) -> dict:
    config["data"]["augment"] = {"paraphrase": 1.0, "paraphrase_model": str(writer), "paraphrase_min_overlap": 0.0,
                                 "paraphrase_max_new_tokens": 6}
    return config


def test_training_rows_read_their_paraphrase_written_once(tiny_config, tiny_model_dir, writer):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    config = config_from_dict(paraphrasing(tiny_config, writer))
    data = prepare_data(config, tokenizer)
    report = data.stats["paraphrase"]
    assert report["rows"] == len(data.train) and 0 < report["generated"] <= report["rows"]
    assert 0 < report["kept"] <= report["rows"] and report["examples"]
    originals = [tuple(ids) for ids in data.train.input_ids]  # iteration gives the stored rows
    read = [tuple(data.train.input_ids[i]) for i in range(len(originals))]  # paraphrase: 1.0
    assert sum(a != b for a, b in zip(originals, read)) == report["kept"]
    cache = Path(report["cache"])
    assert cache.is_relative_to(Path(tiny_config["data"]["cache_dir"])) and cache.is_file()
    with open(cache, "a", encoding="utf-8") as f:
        f.write('{"key": "cut sh')  # a run killed mid-write leaves half a line
    again = prepare_data(config, tokenizer).stats["paraphrase"]
    assert again["generated"] == 0 and again["kept"] == report["kept"]  # nothing asked twice
    newer = paraphrase_texts(["a new row to rewrite"], config.data.augment, cache.parents[1])[1]
    assert newer["generated"] == 1 and newer["cache"] == str(cache)
    assert paraphrase_texts(["a new row to rewrite"], config.data.augment, cache.parents[1])[1]["generated"] == 0


def test_a_run_reports_its_paraphrases(tiny_config, writer):
    config = paraphrasing(tiny_config, writer)
    config["training"]["epochs"] = 1
    run = paretune.finetune(config)
    recorded = json.loads((run.path / "data.json").read_text())["paraphrase"]
    assert recorded["model"] == str(writer) and recorded["kept"] > 0
    assert "paraphrase: 1.0" in (run.path / "config.yaml").read_text()
