"""Knowledge-graph completion on a tiny graph and the tiny random BERT: training, the filtered
ranking protocol checked by hand, bad triple files, prediction, the exported entity table, and the
WordNet builder on a hand-written WordNet excerpt."""
from __future__ import annotations

import json
import random
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import paretune
from paretune.config.loading import config_from_dict
from paretune.data.prepare import check_data
from paretune.errors import DataError, ParetuneError
from paretune.predictor import Predictor
from paretune.tasks.kg_completion import filtered_ranks, ranking_metrics

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ["dog", "cat", "horse", "cow", "sheep", "goat"]
KINDS = ["mammal", "pet", "farm animal"]
PLACES = ["house", "farm", "field"]


def tiny_graph(folder: Path) -> dict[str, Path]:
    """A dozen entities, three relations; train / validation / test TSVs and entities.tsv."""
    entities = {name.replace(" ", "_"): f"{name}: a word about animals" for name in ANIMALS + KINDS + PLACES}
    triples = []
    for i, animal in enumerate(ANIMALS):
        triples.append((animal, "_hypernym", "mammal"))
        triples.append((animal, "_hypernym", "pet" if i < 3 else "farm_animal"))
        triples.append((animal, "_lives_in", "house" if i < 3 else PLACES[1 + i % 2]))
    triples += [("pet", "_lives_in", "house"), ("farm_animal", "_lives_in", "farm"), ("mammal", "_has_part", "dog")]
    random.Random(0).shuffle(triples)
    held = {"validation": [t for t in triples[:3] if t[1] != "_has_part"],
            "test": [t for t in triples[3:6] if t[1] != "_has_part"]}
    held_out = set(held["validation"] + held["test"])
    parts = {"train": [t for t in triples if t not in held_out], **held}
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, rows in parts.items():
        files[role] = folder / f"{role}.tsv"
        files[role].write_text("head\trelation\ttail\n" + "".join("\t".join(t) + "\n" for t in rows))
    (folder / "entities.tsv").write_text("id\ttext\n" + "".join(f"{e}\t{t}\n" for e, t in entities.items()))
    return files


def kg_config(model_dir: Path, files: dict[str, Path], folder: Path, **task) -> dict:
    return {
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "kg-completion", "top_k": 3, **task},
        "method": {"name": "lora"},  # the peft path (FEATURE_EXTRACTION); test_task_plugins trains all weights
        "data": {**{k: str(v) for k, v in files.items()}, "max_length": 24, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 4, "batch_size": 8, "lr": 1e-3, "seed": 3, "eval_every": 2,
                     "save_every": 10_000, "load_best": False},
        "output": {"dir": str(folder / "run")},
    }


@pytest.fixture(scope="module")
def kg_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kg")
    files = tiny_graph(folder / "graph")
    return paretune.finetune(kg_config(tiny_model_dir, files, folder)), files


def test_filtered_ranks_by_hand():
    scores = torch.tensor([
        [0.9, 0.5, 0.7, 0.1],  # gold 2: 0.9 beats it, but entity 0 is another true answer: rank 1
        [0.2, 0.8, 0.8, 0.3],  # gold 1: entity 2 ties it: rank 1 + 0 + 1/2
        [0.4, 0.3, 0.2, 0.1],  # gold 3: three higher, nothing filtered: rank 4
    ])
    ranks = filtered_ranks(scores, torch.tensor([2, 1, 3]), [{0, 2}, {1}, set()])
    assert ranks.tolist() == [1.0, 1.5, 4.0]
    metrics = ranking_metrics(ranks)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 1.5 + 1 / 4) / 3)
    assert (metrics["hits@1"], metrics["hits@3"], metrics["hits@10"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0)
    assert metrics["mean_rank"] == pytest.approx(6.5 / 3)


def test_all_alike_scores_rank_in_the_middle_not_first():
    ranks = filtered_ranks(torch.zeros(1, 5), torch.tensor([0]), [set()])
    assert ranks.tolist() == [3.0]


def test_a_kg_run_reports_the_ranking_metrics(kg_run):
    run, _ = kg_run
    for split in ("validation", "test"):
        metrics = run.metrics[split]
        assert set(metrics) >= {"loss", "mrr", "hits@1", "hits@3", "hits@10", "mean_rank"}
        assert 0 < metrics["mrr"] <= 1 and metrics["hits@1"] <= metrics["hits@3"] <= metrics["hits@10"] <= 1
        assert 1 <= metrics["mean_rank"] <= 12
    assert run.metrics["metric"] == "mrr" and run.metrics["labels"] == ["_has_part", "_hypernym", "_lives_in"]
    card = (run.path / "README.md").read_text()
    assert "mrr" in card.split("## Cost")[0]  # the ranking metrics head the card
    assert "output = model(" in card and ".logits" not in card  # a headless model answers hidden states


def test_eval_of_a_file_matches_the_run(kg_run):
    run, files = kg_run
    got = Predictor.load(run.path).evaluate(files["test"])
    for key in ("mrr", "hits@1", "hits@10", "mean_rank"):
        assert got[key] == pytest.approx(run.metrics["test"][key], abs=1e-5), key


def test_predict_returns_the_top_k_tails(kg_run):
    run, _ = kg_run
    predictor = Predictor.load(run.path)
    first, second = predictor.predict(["dog\t_hypernym", "cow | _lives_in"])
    assert first["head"] == "dog" and first["relation"] == "_hypernym" and len(first["tails"]) == 3
    scores = [t["score"] for t in first["tails"]]
    assert scores == sorted(scores, reverse=True) and "dog" not in [t["entity"] for t in first["tails"]]
    assert second["tails"][0]["text"].endswith("a word about animals")
    with pytest.raises(ParetuneError, match="unknown head entity 'unicorn'"):
        predictor.predict(["unicorn\t_hypernym"])
    with pytest.raises(ParetuneError, match="relation"):
        predictor.predict(["dog\t_eats"])


def test_export_writes_the_entity_table(kg_run, tmp_path):
    from paretune.export import export_embedding_table

    run, _ = kg_run
    target = export_embedding_table(run.path, tmp_path / "t")
    table = load_file(str(target / "embeddings.safetensors"))["embeddings"]
    ids = json.loads((target / "ids.json").read_text())
    assert table.shape == (12, 32) and len(ids) == 12 and "dog" in ids
    assert np.allclose(np.linalg.norm(table, axis=1), 1, atol=1e-4)


BAD = {  # file to damage, its lines after the header, what the error says
    "two columns": ("train", ["dog\t_hypernym"], "row 1.*3 fields"),
    "duplicate": ("train", ["dog\t_hypernym\tmammal", "cat\t_hypernym\tmammal", "dog\t_hypernym\tmammal"],
                  "row 3.*repeats row 1"),
    "self-loop": ("train", ["cat\t_hypernym\tmammal", "dog\t_hypernym\tdog"], "row 2.*self-loop"),
    "unknown entity": ("validation", ["dog\t_hypernym\tunicorn"], "row 1.*unknown entity: tail 'unicorn'"),
    "unseen relation": ("test", ["dog\t_hypernym\tmammal", "dog\t_eats\tcow"],
                        "row 2.*relation '_eats' is not in the training triples"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_triple_files_name_the_file_and_row(case, tiny_model_dir, tmp_path):
    role, lines, message = BAD[case]
    files = tiny_graph(tmp_path / "graph")
    files[role].write_text("head\trelation\ttail\n" + "".join(line + "\n" for line in lines))
    config = config_from_dict(kg_config(tiny_model_dir, files, tmp_path))
    with pytest.raises(DataError, match=f"{files[role].name}.*{message}"):
        check_data(config)


def test_a_missing_entity_file_is_named(tiny_model_dir, tmp_path):
    files = tiny_graph(tmp_path / "graph")
    (tmp_path / "graph" / "entities.tsv").unlink()
    with pytest.raises(ParetuneError, match="task.entities.*entities.tsv"):
        check_data(config_from_dict(kg_config(tiny_model_dir, files, tmp_path)))


WORDNET_EXCERPT = {  # offset, lex file, pos, words, pointers, gloss (WordNet 3.0 data-file lines)
    "data.noun": [
        "02084071 05 n 02 dog 0 domestic_dog 0 003 @ 02083346 n 0000 %m 02085000 n 0000 %p 02158846 n 0000 | a canine",
        "02083346 05 n 01 canine 0 002 ~ 02084071 n 0000 @ 02083346 n 0000 | a mammal; \"a dog is a canine\"",
        "02085000 05 n 01 pack 0 001 #m 02084071 n 0000 | a group",
        "02158846 05 n 01 flag 0 000 | a tail",
    ],
    "data.verb": ["01206218 35 v 01 dog 1 001 + 02084071 n 0101 | go after with the intent to catch"],
    "data.adj": [], "data.adv": [],
}


def test_wordnet_builder_keeps_wn18rr_relations_one_direction(tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_wordnet_kg as builder
    finally:
        sys.path.remove(str(ROOT / "examples"))
    for name, lines in WORDNET_EXCERPT.items():
        (tmp_path / name).write_text("  1 licence header\n" + "".join(line + "  \n" for line in lines))
    texts, triples = builder.read_wordnet(tmp_path)
    assert triples == {("02084071.n", "_hypernym", "02083346.n"), ("02084071.n", "_member_meronym", "02085000.n"),
                       ("02084071.n", "_has_part", "02158846.n"),
                       ("01206218.v", "_derivationally_related_form", "02084071.n")}  # no hyponym, holonym, self-loop
    assert texts["02084071.n"] == "dog, domestic dog: a canine"
    parts = builder.split(triples | {("02084071.n", "_derivationally_related_form", "01206218.v")}, seed=1)
    together = [role for role, rows in parts.items() if any(r == "_derivationally_related_form" for _, r, _ in rows)]
    assert len(together) == 1  # a symmetric pair's two directions share a split


def test_the_server_answers_top_k_tails(kg_run):
    from fastapi.testclient import TestClient

    from paretune.serving.app import create_app
    from paretune.serving.auth import hash_key
    from paretune.serving.settings import ServeSettings

    run, _ = kg_run
    key = "kg-test-key-0123456789abcdef"
    settings = ServeSettings(api_key_hashes=(hash_key(key),), rate_limit=0, max_wait_ms=5, model_processes=0)
    with TestClient(create_app(Predictor.load(run.path, device="cpu"), settings)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(100):  # the warm-up embeds every entity before /readyz says yes
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/predict", json={"texts": ["dog\t_hypernym"]}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"][0]["tails"]) == 3
        bad = client.post("/v1/predict", json={"text": "unicorn\t_hypernym"}, headers=headers)
        assert bad.status_code in (400, 422) and "unicorn" in bad.text


def test_triples_and_entities_read_from_csv_and_jsonl(tmp_path):
    from paretune.data.triples import read_entities, read_triples

    (tmp_path / "t.csv").write_text("head,relation,tail\ndog,_hypernym,mammal\n")
    (tmp_path / "t.jsonl").write_text('{"head": "dog", "relation": "_hypernym", "tail": "mammal"}\n'
                                      '["cat", "_hypernym", "mammal"]\n{"head": "cow", "relation": "_is"}\n')
    (tmp_path / "e.jsonl").write_text('{"id": "dog", "text": "dog: a pet"}\n{"id": "mammal"}\n')
    assert read_triples(tmp_path / "t.csv")[0].label == ("dog", "_hypernym", "mammal")
    with pytest.raises(DataError, match="t.jsonl, row 3, line 3: a triple has 3 fields"):
        read_triples(tmp_path / "t.jsonl")
    assert read_entities(tmp_path / "e.jsonl") == {"dog": "dog: a pet", "mammal": "mammal"}


def test_true_answers_in_the_batch_are_not_negatives(kg_run):
    run, files = kg_run
    task = Predictor.load(run.path).task
    index, relation = task.entity_index, task.label_to_id
    rows = [line.split("\t") for line in files["train"].read_text().splitlines()[1:]]
    (h1, r, t), (h2, _, _) = next((a, b) for a in rows for b in rows if a[1:] == b[1:] and a[0] != b[0])
    # Two training triples with one tail: each inverse query (tail, inverse r) has the other's head
    # as a true answer; the forward queries share the gold tail, true for both.
    labels = torch.tensor([[index[h1], relation[r], index[t]], [index[h2], relation[r], index[t]]])
    mask = task._true_in_batch(labels.numpy(), [index[e] for e in (t, t, h1, h2)], 2)
    assert mask.tolist() == [[True, True, False, False], [True, True, False, False],
                             [False, False, True, True], [False, False, True, True]]
    embeddings = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    assert torch.isfinite(task.loss(embeddings, labels))
