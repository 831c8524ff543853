"""Labels that are legal but suspicious: warned about, never silently turned into classes."""
from __future__ import annotations

import logging

import pytest
from conftest import write_csv

from paretune.config.loading import config_from_dict
from paretune.data.prepare import check_data
from paretune.errors import DataError


def checked(tmp_path, rows, task=None, validation_rows=None):
    train = write_csv(tmp_path / "train.csv", rows)
    validation = write_csv(tmp_path / "validation.csv", validation_rows or rows)
    config = config_from_dict({"task": task or {"type": "classification"},
                               "data": {"train": str(train), "validation": str(validation)}})
    return check_data(config)


GOOD = [("a good film", "pos"), ("a dull film", "neg"), ("a fine plot", "pos"), ("an awful cast", "neg")]


def test_declared_marker_is_a_class_with_a_loud_warning(tmp_path, caplog):
    rows = GOOD + [("no idea", "None"), ("no clue", "None")]
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        data = checked(tmp_path, rows, {"type": "classification", "labels": ["neg", "pos", "None"]})
    assert data.task.label_names == ["neg", "pos", "None"]
    warning = next(r.getMessage() for r in caplog.records if "usually marks a missing label" in r.getMessage())
    assert "train.csv, field 'label'" in warning and "'None' (rows 5, 6)" in warning


def test_undeclared_marker_is_refused_not_a_fourth_class(tmp_path):
    with pytest.raises(DataError) as caught:
        checked(tmp_path, GOOD + [("no idea", "nan")])
    assert "train.csv, row 5, line 6, field 'label': label 'nan' marks a missing value" in str(caught.value)


def test_single_example_class_is_named_with_its_row(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        checked(tmp_path, GOOD + [("so-so", "mixed")])
    [warning] = [r.getMessage() for r in caplog.records if "single training example" in r.getMessage()]
    assert "train.csv, field 'label'" in warning and "'mixed' (row 5)" in warning


def test_no_warning_when_every_class_has_examples(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        checked(tmp_path, GOOD)
    assert not [r for r in caplog.records if "single training example" in r.getMessage()]


def test_multilabel_lists_and_delimited_text_are_labels(tmp_path):
    rows = [("the match", "sports"), ("the vote", "politics,sports"), ("rain", "weather")]
    data = checked(tmp_path, rows, {"type": "multilabel"})
    assert data.task.label_names == ["politics", "sports", "weather"]


def test_numbers_in_a_text_column_are_refused_naming_the_column(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": 42, "label": "pos"}\n{"text": "fine", "label": "neg"}\n')
    config = config_from_dict({"data": {"train": str(path), "validation": str(path)}})
    with pytest.raises(DataError) as caught:
        check_data(config)
    assert "row 1, line 1, field 'text': expected a string, found int 42; is data.text_column right?" \
        in str(caught.value)


def test_declared_tag_scheme_accepts_its_own_prefixes(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("Peter B-PER\nBlackburn E-PER\n\nParis S-LOC\nsaid O\n")
    config = config_from_dict({"task": {"type": "ner", "tag_scheme": "bioes"},
                               "data": {"train": str(path), "validation": str(path)}})
    assert check_data(config).task.label_names[0] == "O"


def test_marker_labels_are_reported_with_the_other_row_problems_in_one_run(tmp_path):
    markers = [(f"row with a marker {i}", marker) for i, marker in enumerate(["NaN", "None", "N/A", "null", "NA", "-", "?"])]
    with pytest.raises(DataError) as err:
        checked(tmp_path, GOOD + [("", "pos")] + markers)  # an empty text stops the read itself
    message = str(err.value)
    assert "8 data problems" in message and "row 5" in message and "text is empty" in message
    assert all(f"label {marker!r} marks a missing value" in message for _, marker in markers)


def test_a_json_boolean_among_numeric_labels_is_refused_naming_its_row(tmp_path):
    import json

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": True if i == 5 else i % 2}) + "\n"
                             for i in range(1, 9)))
    config = config_from_dict({"task": {"type": "classification"}, "data": {"train": str(train)}})
    with pytest.raises(DataError, match=r"row 5, line 5, field 'label': label true \(a JSON boolean\) among "
                                        r"numeric labels.*write 1"):
        check_data(config)
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2 == 0}) + "\n" for i in range(8)))
    assert check_data(config).task.label_names == ["False", "True"]  # booleans throughout: two classes


def test_parquet_binary_labels_are_their_text_and_other_bytes_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train = tmp_path / "train.parquet"
    texts = [f"text {i}" for i in range(8)]
    pq.write_table(pa.table({"text": texts, "label": [str(i % 2).encode() for i in range(8)]}), train)
    config = config_from_dict({"task": {"type": "classification"}, "data": {"train": str(train)}})
    assert check_data(config).task.label_names == ["0", "1"]  # not "b'0'"
    pq.write_table(pa.table({"text": texts, "label": [b"\xff\xfe"] + [b"1"] * 7}), train)
    with pytest.raises(DataError, match=r"row 1, field 'label': label is binary data b'\\xff\\xfe', not text"):
        check_data(config)
