"""Metric functions checked against figures worked out by hand (the working is in the comments)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from paretune.evaluation.classification_metrics import classification_metrics, multilabel_metrics
from paretune.evaluation.ner_metrics import detect_tag_scheme, ner_metrics, tags_to_spans
from paretune.evaluation.regression_metrics import regression_metrics
from paretune.evaluation.report import format_metrics

LABELS = ["cat", "dog", "bird"]
# 3 cats, 2 dogs, 1 bird; one cat taken for a dog, one dog for a bird.
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


# ---------------------------------------------------------------- single-label classification


def test_three_class_scores_match_hand_computation():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    # cat: P 2/2, R 2/3, F1 0.8 | dog: P 1/2, R 1/2, F1 0.5 | bird: P 1/2, R 1/1, F1 2/3
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert metrics["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # 59/90
    # Single-label micro averages all equal accuracy.
    for name in ("precision_micro", "recall_micro", "f1_micro"):
        assert metrics[name] == pytest.approx(4 / 6)
    # Weighted by support 3, 2, 1.
    assert metrics["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)  # 61/90
    assert metrics["precision_weighted"] == pytest.approx((3 * 1 + 2 * 0.5 + 1 * 0.5) / 6)
    assert metrics["support"] == 6


def test_per_class_and_confusion_matrix():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert list(metrics["per_class"]) == LABELS
    assert metrics["per_class"]["cat"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert metrics["per_class"]["bird"]["f1"] == pytest.approx(2 / 3)
    # Rows are true labels, columns predicted, both in LABELS order.
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_absent_label_is_reported_with_zeros_and_result_is_json():
    metrics = classification_metrics([0, 1], [0, 1], ["a", "b", "never"])
    assert metrics["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # The unseen label is part of the macro average: (1 + 1 + 0) / 3.
    assert metrics["f1_macro"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"][2] == [0, 0, 0]
    assert type(metrics["accuracy"]) is float
    json.dumps(metrics)  # plain Python types only


def test_label_id_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], LABELS)


@pytest.mark.parametrize("seed", range(5))
def test_classification_and_multilabel_agree_with_scikit_learn(seed):
    # The metrics are computed with numpy (scikit-learn's import costs every process >1 s); they must
    # stay the figures scikit-learn gives, absent and never-predicted labels included.
    from sklearn import metrics as sk

    rng = np.random.default_rng(seed)
    labels = [f"l{i}" for i in range(5)]
    y_true, y_pred = rng.integers(0, 4, 40), rng.integers(0, 5, 40)  # label 4 never true
    ours = classification_metrics(y_true, y_pred, labels)
    ids = list(range(5))
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
        assert (ours[f"precision_{average}"], ours[f"recall_{average}"], ours[f"f1_{average}"]) == pytest.approx((p, r, f))
    assert ours["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=ids).tolist()

    true_matrix, pred_matrix = rng.integers(0, 2, (30, 4)), rng.integers(0, 2, (30, 4))
    true_matrix[:, 3] = 0
    multi = multilabel_metrics(true_matrix, pred_matrix, labels[:4])
    assert multi["exact_match"] == pytest.approx(sk.accuracy_score(true_matrix, pred_matrix))
    assert multi["hamming_loss"] == pytest.approx(sk.hamming_loss(true_matrix, pred_matrix))
    for average in ("micro", "macro"):
        _, _, f, _ = sk.precision_recall_fscore_support(true_matrix, pred_matrix, average=average, zero_division=0)
        assert multi[f"f1_{average}"] == pytest.approx(f)
    _, recall, _, support = sk.precision_recall_fscore_support(true_matrix, pred_matrix, average=None, zero_division=0)
    assert [c["recall"] for c in multi["per_class"].values()] == pytest.approx(list(recall))
    assert [c["support"] for c in multi["per_class"].values()] == list(support)


# ---------------------------------------------------------------- multi-label


def test_multilabel_scores_match_hand_computation():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    metrics = multilabel_metrics(y_true, y_pred, ["x", "y", "z"])
    assert metrics["exact_match"] == pytest.approx(1 / 3)  # only the middle row is all right
    assert metrics["hamming_loss"] == pytest.approx(3 / 9)  # 3 wrong cells of 9
    # Pooled over classes: tp 3, fp 1, fn 2.
    assert metrics["precision_micro"] == pytest.approx(3 / 4)
    assert metrics["recall_micro"] == pytest.approx(3 / 5)
    assert metrics["f1_micro"] == pytest.approx(2 / 3)
    # x perfect (F1 1), y tp1 fn1 (F1 2/3), z tp0 (F1 0).
    assert metrics["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert metrics["per_class"]["y"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    json.dumps(metrics)


# ---------------------------------------------------------------- regression


def test_regression_perfect_prediction():
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert metrics["mse"] == 0.0 and metrics["mae"] == 0.0 and metrics["rmse"] == 0.0
    assert metrics["r2"] == pytest.approx(1.0)
    assert metrics["pearson"] == pytest.approx(1.0)
    assert metrics["spearman"] == pytest.approx(1.0)


def test_regression_hand_example():
    # Errors 0, 0, 0, 2: MSE 4/4, MAE 2/4; SS_tot around the mean 2.5 is 5, so R2 = 1 - 4/5.
    metrics = regression_metrics([1, 2, 3, 4], [1, 2, 3, 6])
    assert metrics["mse"] == pytest.approx(1.0)
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(0.2)
    json.dumps(metrics)


def test_spearman_uses_ranks_and_constant_input_gives_zero():
    monotone = regression_metrics([1, 2, 3, 4], [1, 4, 9, 100])
    assert monotone["spearman"] == pytest.approx(1.0)
    assert monotone["pearson"] < 0.99
    assert regression_metrics([1, 2, 3], [3, 2, 1])["spearman"] == pytest.approx(-1.0)
    constant = regression_metrics([1, 2, 3], [5, 5, 5])
    assert constant["pearson"] == 0.0 and constant["spearman"] == 0.0


# ---------------------------------------------------------------- NER


def test_conlleval_counts_wrong_boundary_and_wrong_type_as_misses():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    # PER cut short (wrong boundary), LOC called ORG (wrong type), last ORG right.
    pred = [["B-PER", "O", "O", "B-ORG", "O", "B-ORG"]]
    metrics = ner_metrics(gold, pred, "iob2")
    # 3 gold entities, 3 predicted, 1 exact match.
    assert metrics["precision"] == pytest.approx(1 / 3)
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(1 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)  # tokens 1 and 3 wrong
    # ORG: 2 predicted, 1 right, 1 gold -> P 1/2, R 1, F1 2/3; PER and LOC 0.
    assert metrics["per_type"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert metrics["per_type"]["PER"]["f1"] == 0.0
    assert metrics["f1_macro"] == pytest.approx((0 + 0 + 2 / 3) / 3)
    json.dumps(metrics)


def test_iob1_reads_leading_i_as_entity_start():
    gold = [["I-PER", "I-PER", "O", "I-LOC"]]
    assert tags_to_spans(gold[0], "iob1") == [("PER", 0, 2), ("LOC", 3, 4)]
    # In IOB1, B- only splits two adjacent entities of the same type.
    assert tags_to_spans(["I-PER", "B-PER"], "iob1") == [("PER", 0, 1), ("PER", 1, 2)]
    metrics = ner_metrics(gold, [["I-PER", "I-PER", "O", "I-PER"]], "iob1")
    assert metrics["precision"] == pytest.approx(1 / 2)  # PER right, second span has the wrong type
    assert metrics["recall"] == pytest.approx(1 / 2)


def test_bioes_is_strict():
    gold = [["B-PER", "E-PER", "O", "S-LOC"]]
    pred = [["B-PER", "E-PER", "O", "B-LOC"]]  # B-LOC never closed: not an entity in strict mode
    assert tags_to_spans(gold[0], "bioes") == [("PER", 0, 2), ("LOC", 3, 4)]
    assert tags_to_spans(pred[0], "bioes") == [("PER", 0, 2)]
    metrics = ner_metrics(gold, pred, "bioes")
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(2 / 3)
    # conlleval semantics would have accepted the lone B-LOC as a one-word entity.
    assert ner_metrics(gold, pred, "iob2")["f1"] == pytest.approx(1.0)


def test_no_entities_anywhere_scores_zero_not_nan():
    metrics = ner_metrics([["O", "O"]], [["O", "O"]], "iob2")
    assert metrics["f1"] == 0.0 and metrics["f1_macro"] == 0.0 and metrics["per_type"] == {}
    assert metrics["accuracy"] == 1.0


def test_ner_rejects_unknown_scheme_and_misaligned_sentences():
    with pytest.raises(ValueError, match="scheme"):
        ner_metrics([["O"]], [["O"]], "bilou")
    with pytest.raises(ValueError, match="sentence 0"):
        ner_metrics([["O", "O"]], [["O"]], "iob2")


def test_detect_tag_scheme():
    assert detect_tag_scheme([["B-PER", "I-PER", "O"], ["B-LOC", "O"]]) == "iob2"
    assert detect_tag_scheme([["I-PER", "I-PER", "O", "I-LOC"]]) == "iob1"
    assert detect_tag_scheme([["B-PER", "I-LOC"]]) == "iob1"  # I- after a B- of another type
    # An entity does not run on into the next sentence.
    assert detect_tag_scheme([["B-PER", "I-PER"], ["I-PER", "O"]]) == "iob1"
    assert detect_tag_scheme([["B-PER", "E-PER", "O", "S-LOC"]]) == "bioes"


# ---------------------------------------------------------------- report


def test_format_metrics_shows_scalars_labels_and_matrix():
    text = format_metrics(classification_metrics(Y_TRUE, Y_PRED, LABELS), "dev set")
    assert "dev set" in text
    assert "accuracy" in text and "0.6667" in text
    for label in LABELS:
        assert label in text
    assert "confusion matrix" in text


def test_format_metrics_ner_and_skipped_nested_values():
    metrics = ner_metrics([["B-PER", "O"]], [["B-PER", "O"]], "iob2")
    metrics["extra"] = {"nested": {"ignored": 1}}
    text = format_metrics(metrics, "ner [test]")  # brackets must not be taken as rich markup
    assert "ner [test]" in text and "PER" in text and "1.0000" in text
    assert "ignored" not in text
