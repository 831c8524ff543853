"""Scores of generated answers: exact match and contains ignore case and surrounding whitespace;
`regex:`, `json:FIELD` and `json-list` (entity-level micro F1 over JSON list items) are checked
against hand-computed figures; an unknown match kind is a config error."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from paretune.evaluation.generation_metrics import generation_metrics, json_list_scores, structured_equal
from paretune.tasks.generation import GenerationOptions


def test_exact_match_and_contains_ignore_case_and_surrounding_space():
    metrics = generation_metrics([" Positive\n", "it is negative", "neutral"], ["positive", "negative", "positive"])
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["contains"] == pytest.approx(2 / 3)
    assert metrics["generated_rows"] == 3


def test_regex_and_json_field_matches():
    assert structured_equal("The answer is 42.", "answer: 42", r"regex:(\d+)")
    assert not structured_equal("no number", "42", r"regex:(\d+)")
    assert structured_equal('{"label": "pos", "why": "fun"}', '{"label": "pos"}', "json:label")
    assert not structured_equal('{"label": "pos"', '{"label": "pos"}', "json:label")  # not JSON
    metrics = generation_metrics(['{"a": 1}', '{"a": 2}'], ['{"a": 1}', '{"a": 1}'], "json:a")
    assert metrics["structured_match"] == 0.5


def test_json_list_is_micro_f1_over_items_as_a_multiset():
    eu, germany = '{"text":"EU","type":"ORG"}', '{"text":"Germany","type":"LOC"}'
    predictions = [
        f'[{germany}, {{"type":"ORG","text":"EU"}}]',  # both right, other order and key order
        f'[{germany}, {germany}]',                     # one of the two Germany mentions is right
        '[{"text":"Peter","type":"ORG"}]',              # wrong type: a false positive and a miss
        'I found: Germany',                             # not JSON: predicts nothing
        "[]",
    ]
    references = [f"[{eu},{germany}]", f"[{germany},{eu}]", '[{"text":"Peter","type":"PER"}]', f"[{germany}]", "[]"]
    scores = json_list_scores(predictions, references)
    # predicted 2 + 2 + 1 + 0 + 0 = 5 items, 2 + 1 = 3 right; 2 + 2 + 1 + 1 = 6 expected
    assert scores["item_precision"] == pytest.approx(3 / 5)
    assert scores["item_recall"] == pytest.approx(3 / 6)
    assert scores["item_f1"] == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    assert scores["json_parse_rate"] == pytest.approx(4 / 5)
    metrics = generation_metrics(predictions, references, "json-list")
    assert metrics["item_f1"] == scores["item_f1"]
    assert metrics["structured_match"] == pytest.approx(2 / 5)  # rows 1 and 5: the same items


def test_nothing_predicted_scores_zero_not_nan():
    assert json_list_scores(["[]", "x"], ["[]", "[]"])["item_f1"] == 0.0


def test_an_unknown_match_kind_is_a_config_error():
    assert GenerationOptions(match="json-list").match == "json-list"
    assert GenerationOptions(match="regex:(\\d+)").match == "regex:(\\d+)"
    with pytest.raises(ValidationError, match="unknown match 'jsonlist'"):
        GenerationOptions(match="jsonlist")
