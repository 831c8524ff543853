"""data.knowledge: triples verbalised into training rows (statements and questions), the bad inputs named
by file, row and field, and a tiny generative run that records the rows it added in data.json."""
from __future__ import annotations

import json

import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.config.loading import load_config
from paretune.data.examples import Example
from paretune.data.knowledge import KnowledgeConfig, with_knowledge
from paretune.errors import ConfigError, DataError
from paretune.tasks.classification import ClassificationTask
from paretune.tasks.generation import GenerationTask
from paretune.tasks.mlm import MlmTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENTITIES = {
    "01.n": "poodle, poodle dog: an intelligent dog with a heavy curly coat",
    "02.n": "dog, domestic dog, Canis familiaris: a member of the genus Canis",
    "03.n": "canine, canid: any of various fissiped mammals",
    "04.n": "tail: the posterior part of the body of a vertebrate",
}
TRIPLES = [("01.n", "_hypernym", "02.n"), ("02.n", "_hypernym", "03.n"), ("02.n", "_has_part", "04.n")]


def write_graph(folder, triples=TRIPLES, entities=ENTITIES, extra_lines=()):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["head\trelation\ttail"] + ["\t".join(t) for t in triples] + list(extra_lines)
    (folder / "triples.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "entities.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in entities.items()), encoding="utf-8")
    return folder / "triples.tsv"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return write_graph(tmp_path_factory.mktemp("graph"))


def test_default_templates_give_statements_for_mlm_and_questions_for_generation(graph):
    statements, report = with_knowledge(KnowledgeConfig.model_validate(str(graph)), [], MlmTask)
    assert [ex.text for ex in statements] == ["Poodle is a kind of dog.", "Dog is a kind of canine.",
                                              "Dog has tail as a part."]
    assert all(ex.label is None for ex in statements) and [ex.row for ex in statements] == [1, 2, 3]
    assert report == {"file": str(graph), "triples": 3, "rows_added": 3, "form": "text", "mode": "add",
                      "relations": {"_has_part": 1, "_hypernym": 2}}

    base = statements[:1]  # stands for the run's own rows: kept, the knowledge rows after them
    rows, report = with_knowledge(KnowledgeConfig(triples=str(graph)), base, GenerationTask)
    assert rows[0] is base[0] and report["form"] == "instruction" and report["rows_added"] == 3
    assert rows[1].text == [{"role": "user", "content": "What is poodle a kind of?"},
                            {"role": "assistant", "content": "dog"}] and rows[1].label == "dog"
    assert rows[3].text[0]["content"] == "What is a part of dog?" and rows[3].label == "tail"


def test_custom_templates_both_forms_names_and_replace(tmp_path):
    triples = write_graph(tmp_path / "g", [("paris", "capital_of", "france"), ("01.n", "_hypernym", "02.n")],
                          {**ENTITIES, "paris": "Paris", "france": "France"})
    options = KnowledgeConfig(triples=str(triples), form="both", mode="replace", names="text",
                              templates={"capital_of": "{head} is the capital of {tail}.",
                                         "_hypernym": "Every {head} is a {tail}."},
                              questions={"capital_of": "Which country is {head} the capital of?"})
    rows, report = with_knowledge(options, [Example("own row", None, 1)], GenerationTask)  # the file's rows: replaced
    assert [ex.text if isinstance(ex.text, str) else ex.text[0]["content"] for ex in rows] == [
        "Paris is the capital of France.", "Which country is Paris the capital of?",
        f"Every {ENTITIES['01.n']} is a {ENTITIES['02.n']}.", f"What is {ENTITIES['01.n']} a kind of?"]
    assert report["form"] == "text+instruction" and report["rows_added"] == 4 and report["train_rows_replaced"] == 1

    no_entity_file = write_graph(tmp_path / "ids", [("a", "_hypernym", "b")])
    (tmp_path / "ids" / "entities.tsv").unlink()
    rows, _ = with_knowledge(KnowledgeConfig(triples=str(no_entity_file)), [], MlmTask)
    assert rows[0].text == "A is a kind of b."  # ids are their own names


def test_bad_inputs_are_named_by_file_row_and_field_all_at_once(tmp_path):
    triples = write_graph(tmp_path / "bad", TRIPLES + [("01.n", "likes", "03.n"), ("09.n", "_hypernym", "01.n")])
    with pytest.raises(DataError) as caught:
        with_knowledge(KnowledgeConfig(triples=str(triples)), [], GenerationTask)
    found = {(p.row, p.field): p.message for p in caught.value.problems}
    assert set(found) == {(4, "relation"), (5, "head")} and all(p.file == str(triples) for p in caught.value.problems)
    assert "'likes' has no template" in found[(4, "relation")] and "data.knowledge.questions" in found[(4, "relation")]
    assert "'09.n' is not in the entity file" in found[(5, "head")]

    malformed = write_graph(tmp_path / "short", extra_lines=["01.n\t_hypernym"])
    with pytest.raises(DataError) as caught:
        with_knowledge(KnowledgeConfig(triples=str(malformed)), [], MlmTask)
    problem = caught.value.problems[0]
    assert (problem.file, problem.row, problem.line) == (str(malformed), 4, 5) and "3 fields" in problem.message

    with pytest.raises(ConfigError, match="does not generate"):
        with_knowledge(KnowledgeConfig(triples=str(triples), form="instruction"), [], MlmTask)
    with pytest.raises(ConfigError, match="labelled rows"):
        with_knowledge(KnowledgeConfig(triples=str(triples)), [], ClassificationTask)
    with pytest.raises(DataError, match="no such triples file"):
        with_knowledge(KnowledgeConfig(triples=str(tmp_path / "none.tsv")), [], MlmTask)
    with pytest.raises(DataError, match="entities: no such file"):  # relative: from the triples' folder
        with_knowledge(KnowledgeConfig(triples=str(triples), entities="names.tsv"), [], MlmTask)


def test_config_takes_a_path_relative_to_its_folder_and_checks_templates(graph):
    config_file = graph.parent / "run.yaml"  # beside the graph: `knowledge: triples.tsv` is relative
    config_file.write_text(f"data: {{train: t.jsonl, knowledge: {graph.name}}}\n", encoding="utf-8")
    knowledge = load_config(config_file).data.knowledge
    assert knowledge.triples == str(graph) and knowledge.form == "auto" and knowledge.mode == "add"
    with pytest.raises(ValueError, match="must use exactly"):
        KnowledgeConfig(triples="t.tsv", templates={"r": "{head} is {thing}."})
    with pytest.raises(ValueError, match="use {head} only"):
        KnowledgeConfig(triples="t.tsv", questions={"r": "Is {head} a {tail}?"})


def test_a_generative_run_trains_on_knowledge_rows_and_reports_them(graph, tmp_path):
    words = {"what", "is", "a", "kind", "of", "part", "poodle", "dog", "canine", "tail"}
    model_dir = tiny_llama_dir(tmp_path / "llama", extra_words=words)
    config = {
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "generation", "generate_rows": 0},
        "data": {"train": str(write_jsonl(tmp_path / "train.jsonl", instruction_rows(8, 1))),
                 "validation": str(write_jsonl(tmp_path / "validation.jsonl", instruction_rows(4, 2))),
                 "knowledge": str(graph), "max_length": 48, "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 1, "batch_size": 4, "lr": 1e-3, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "run")},
    }
    run = paretune.finetune(config)
    data = json.loads((run.path / "data.json").read_text())
    assert data["train_rows"] == 8 + 3 and data["validation_rows"] == 4
    assert data["knowledge"]["rows_added"] == 3 and data["knowledge"]["form"] == "instruction"
