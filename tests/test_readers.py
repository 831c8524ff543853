"""Reading every supported data format, and the messages a user sees when a file is wrong."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from paretune.data.examples import Example
from paretune.data.readers import infer_format, read_examples, warn_duplicates
from paretune.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def data_error(path: Path, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        read_examples(path, **options)
    return caught.value


# --- infer_format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"), ("a.tsv", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "jsonl"),
        ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.conll", "conll"), ("a.txt", "conll"),
        ("a.iob", "conll"), ("a.bio", "conll"), ("A.CSV", "csv"),
    ],
)
def test_infer_format_from_extension(name, fmt):
    assert infer_format(name) == fmt


def test_infer_format_unknown_extension_names_file_formats_and_key():
    with pytest.raises(DataError) as caught:
        infer_format("reviews.xlsx")
    message = str(caught.value)
    assert "reviews.xlsx" in message and "'.xlsx'" in message
    assert "data.format" in message
    for fmt in ("csv", "tsv", "jsonl", "parquet", "conll", "hf"):
        assert fmt in message


def test_infer_format_no_extension():
    with pytest.raises(DataError, match="no extension"):
        infer_format("README")


def test_infer_format_plain_folder_is_an_error(tmp_path):
    with pytest.raises(DataError) as caught:
        infer_format(tmp_path)
    assert str(tmp_path) in str(caught.value) and "save_to_disk" in str(caught.value)


# --- csv ------------------------------------------------------------------------------------


def test_csv_quoted_comma_raw_labels_rows_and_lines(tmp_path):
    path = write(tmp_path / "train.csv", 'text,label\n"good, really",1\n\n"two\nlines",0\nplain,1\n')
    examples = read_examples(path)
    assert examples == [
        Example("good, really", "1", row=1, line=2),
        Example("two\nlines", "0", row=2, line=4),
        Example("plain", "1", row=3, line=6),
    ]


def test_csv_other_column_names(tmp_path):
    path = write(tmp_path / "train.csv", "id,sentence,y\n7,hello,pos\n")
    [example] = read_examples(path, text_column="sentence", label_column="y")
    assert (example.text, example.label) == ("hello", "pos")


def test_csv_bom_is_stripped(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhi,a\n")
    assert read_examples(path)[0].text == "hi"


def test_csv_wrong_field_count_reports_every_row(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nfine,1\ntoo,many,fields\nalone\n")
    error = data_error(path)
    assert len(error.problems) == 2
    message = str(error)
    assert "train.csv, row 2, line 3: expected 2 fields" in message
    assert "row 3, line 4" in message and "found 1" in message


def test_csv_unclosed_quote_names_its_line(tmp_path):
    path = write(tmp_path / "train.csv", 'text,label\nok,1\n"never closed,0\nmore,1\n')
    error = data_error(path)
    assert "train.csv, line 3" in str(error) and "quote" in str(error)


def test_csv_duplicate_header_column(tmp_path):
    path = write(tmp_path / "train.csv", "text,label,text\na,b,c\n")
    assert "'text'" in str(data_error(path))


def test_bad_encoding_names_line_byte_and_key(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\nfine,1\ncaf\u00e9,0\n".encode("latin-1"))
    message = str(data_error(path))
    assert "train.csv, line 3" in message
    assert "0xe9" in message and "byte offset 21" in message
    assert "data.encoding" in message
    assert read_examples(path, encoding="latin-1")[1].text == "caf\u00e9"


def test_unknown_encoding_name(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\na,b\n")
    assert "data.encoding" in str(data_error(path, encoding="no-such-codec"))


# --- tsv ------------------------------------------------------------------------------------


def test_tsv_glue_style_keeps_literal_quotes(tmp_path):
    path = write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said "hi\t1\n"quoted" start\t0\n')
    examples = read_examples(path, text_column="sentence")
    assert [ex.text for ex in examples] == ['he said "hi', '"quoted" start']
    assert [ex.label for ex in examples] == ["1", "0"]


def test_tsv_extra_tab_is_reported(tmp_path):
    path = write(tmp_path / "dev.tsv", "text\tlabel\na\tb\tc\n")
    assert "dev.tsv, row 1, line 2: expected 2 fields" in str(data_error(path))


# --- jsonl / json ---------------------------------------------------------------------------


def test_jsonl_native_types_and_blank_lines(tmp_path):
    lines = [json.dumps({"text": "a", "label": 1}), "", json.dumps({"text": "b", "label": ["x", "y"]}), ""]
    examples = read_examples(write(tmp_path / "train.jsonl", "\n".join(lines)))
    assert examples == [Example("a", 1, row=1, line=1), Example("b", ["x", "y"], row=2, line=3)]


def test_jsonl_bad_lines_are_all_reported(tmp_path):
    lines = ['{"text": "a", "label": 1}', "{not json", "[1, 2]", '{"text": "b", "label": 0}']
    error = data_error(write(tmp_path / "train.jsonl", "\n".join(lines)))
    assert len(error.problems) == 2
    message = str(error)
    assert "train.jsonl, row 2, line 2: not valid JSON" in message
    assert "row 3, line 3: expected a JSON object, found list" in message


def test_json_array_of_objects(tmp_path):
    path = write(tmp_path / "train.json", json.dumps([{"text": "a", "label": 0}, {"text": "b", "label": 1}]))
    assert [(ex.text, ex.label, ex.row) for ex in read_examples(path)] == [("a", 0, 1), ("b", 1, 2)]


def test_json_array_not_valid(tmp_path):
    message = str(data_error(write(tmp_path / "train.json", '[\n{"text": "a"},\n{oops}\n]')))
    assert "train.json, line 3: not valid JSON" in message


def test_jsonl_field_missing_in_one_row(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": 0}\n{"label": 1}\n')
    assert "train.jsonl, row 2, line 2, field 'text': text is empty" in str(data_error(path))


def test_jsonl_text_must_be_a_string(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": 5, "label": 0}\n')
    assert "row 1, line 1, field 'text': expected a string, found int" in str(data_error(path))


# --- columns, empty text, missing labels ------------------------------------------------------


def test_missing_text_column_lists_columns(tmp_path):
    message = str(data_error(write(tmp_path / "train.csv", "sentence,label\na,b\n")))
    assert "train.csv, field 'text'" in message
    assert "sentence, label" in message and "data.text_column" in message


def test_missing_label_column_lists_columns(tmp_path):
    message = str(data_error(write(tmp_path / "train.csv", "text,y\na,b\n")))
    assert "train.csv, field 'label'" in message
    assert "text, y" in message and "data.label_column" in message


def test_labels_optional_without_label_column(tmp_path):
    path = write(tmp_path / "predict.csv", "text\nhello\n")
    assert read_examples(path, require_labels=False) == [Example("hello", None, row=1, line=2)]


def test_labels_optional_empty_cell_is_none(tmp_path):
    path = write(tmp_path / "predict.csv", "text,label\nhello,\n")
    assert read_examples(path, require_labels=False)[0].label is None


def test_empty_text_and_missing_labels_are_all_reported(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nok,1\n,1\n   ,0\nfine,\nalso fine,  \n")
    error = data_error(path)
    message = str(error)
    assert len(error.problems) == 4
    assert "train.csv, row 2, line 3, field 'text': text is empty" in message
    assert "row 3, line 4, field 'text'" in message
    assert "row 4, line 5, field 'label': label is missing" in message
    assert "row 5, line 6, field 'label'" in message


def test_json_null_label_is_missing(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": null}\n')
    assert "row 1, line 1, field 'label': label is missing" in str(data_error(path))


def test_all_problems_are_collected(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\n" + ",1\n" * 25)
    error = data_error(path)
    assert len(error.problems) == 25
    assert "and 5 more" in str(error)


def test_empty_file_and_header_only(tmp_path):
    assert "holds no examples" in str(data_error(write(tmp_path / "empty.jsonl", "")))
    assert "holds no examples" in str(data_error(write(tmp_path / "header.csv", "text,label\n")))


# --- word level from tabular files ------------------------------------------------------------


def test_word_level_jsonl_lists_and_csv_strings(tmp_path):
    jsonl = write(tmp_path / "ner.jsonl", json.dumps({"text": ["EU", "rejects"], "label": ["B-ORG", "O"]}))
    assert read_examples(jsonl, word_level=True)[0] == Example(["EU", "rejects"], ["B-ORG", "O"], 1, 1)
    csv_path = write(tmp_path / "ner.csv", "text,label\nEU  rejects,B-ORG O\n")
    assert read_examples(csv_path, word_level=True)[0].text == ["EU", "rejects"]


def test_word_level_length_mismatch_names_row(tmp_path):
    lines = [
        json.dumps({"text": ["a", "b"], "label": ["O", "O"]}),
        json.dumps({"text": ["a", "b", "c"], "label": ["O"]}),
    ]
    message = str(data_error(write(tmp_path / "ner.jsonl", "\n".join(lines)), word_level=True))
    assert "ner.jsonl, row 2, line 2, field 'label': 3 words but 1 tags" in message


def test_word_level_bad_types(tmp_path):
    lines = [
        json.dumps({"text": ["a", 3], "label": ["O", "O"]}),
        json.dumps({"text": [], "label": []}),
        json.dumps({"text": ["a"], "label": {"tag": "O"}}),
        json.dumps({"text": ["a", " "], "label": ["O", "O"]}),
    ]
    error = data_error(write(tmp_path / "ner.jsonl", "\n".join(lines)), word_level=True)
    message = str(error)
    assert "row 1, line 1, field 'text': expected a list of words" in message
    assert "row 2, line 2, field 'text': text is empty" in message
    assert "row 3, line 3, field 'label': expected a list of tags" in message
    assert "row 4, line 4, field 'text': a word is empty" in message


# --- parquet --------------------------------------------------------------------------------


def test_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1], "extra": [1.5, 2.5]}), path)
    assert read_examples(path) == [Example("a", 0, 1, None), Example("b", 1, 2, None)]


def test_parquet_word_level_and_nan_label(tmp_path):
    path = tmp_path / "ner.pq"
    pq.write_table(pa.table({"text": [["a", "b"]], "label": [["O", "B-X"]]}), path)
    assert read_examples(path, word_level=True)[0].label == ["O", "B-X"]

    nan_path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [0.5, math.nan, None]}), nan_path)
    message = str(data_error(nan_path))
    assert "scores.parquet, row 2, field 'label': label is missing" in message
    assert "row 3, field 'label'" in message


def test_not_a_parquet_file(tmp_path):
    path = write(tmp_path / "train.parquet", "text,label\n")
    assert "train.parquet: cannot read as parquet" in str(data_error(path))


# --- hf datasets ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_datasets(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("hf")
    train = datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, 0]})
    test = datasets.Dataset.from_dict({"sentence": ["d"], "label": [1]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(root / "dict"))
    train.save_to_disk(str(root / "single"))
    return root


def test_hf_dataset_dict_split(saved_datasets):
    folder = saved_datasets / "dict"
    assert infer_format(folder) == "hf"
    examples = read_examples(folder, text_column="sentence", split="test")
    assert examples == [Example("d", 1, 1, None)]


def test_hf_dataset_dict_needs_a_known_split(saved_datasets):
    folder = saved_datasets / "dict"
    for split in (None, "validation"):
        message = str(data_error(folder, text_column="sentence", split=split))
        assert str(folder) in message and "train, test" in message
    assert "no split 'validation'" in message


def test_hf_single_dataset(saved_datasets):
    folder = saved_datasets / "single"
    assert infer_format(folder) == "hf"
    assert [ex.text for ex in read_examples(folder, text_column="sentence")] == ["a", "b", "c"]


def test_folder_that_is_not_a_dataset(tmp_path):
    assert "save_to_disk" in str(data_error(tmp_path))
    assert "is a folder, not a csv file" in str(data_error(tmp_path, fmt="csv"))


def test_hf_format_on_a_file_and_unknown_format(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\na,b\n")
    assert "save_to_disk" in str(data_error(path, fmt="hf"))
    assert "data.format" in str(data_error(path, fmt="xml"))


def test_missing_file(tmp_path):
    message = str(data_error(tmp_path / "nope.csv"))
    assert "nope.csv: file not found" in message


# --- conll ----------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC


"""


def test_conll_docstart_and_trailing_blank_lines(tmp_path):
    examples = read_examples(write(tmp_path / "train.conll", CONLL))
    assert examples == [
        Example(["EU", "rejects"], ["B-ORG", "O"], row=1, line=3),
        Example(["Peter", "Blackburn"], ["B-PER", "I-PER"], row=2, line=6),
        Example(["BRUSSELS"], ["B-LOC"], row=3, line=11),
    ]


def test_conll_missing_tag(tmp_path):
    path = write(tmp_path / "train.txt", "EU B-ORG\nrejects\n\nok O\nalso\n")
    error = data_error(path)
    assert len(error.problems) == 2
    message = str(error)
    assert "train.txt, row 1, line 2, field 'tag'" in message
    assert "row 2, line 5, field 'tag'" in message


def test_conll_without_labels(tmp_path):
    path = write(tmp_path / "predict.txt", "EU\nrejects\n\nPeter\n")
    examples = read_examples(path, require_labels=False)
    assert examples == [Example(["EU", "rejects"], None, 1, 1), Example(["Peter"], None, 2, 4)]
    mixed = write(tmp_path / "mixed.txt", "EU B-ORG\nrejects\n")
    assert "mixed.txt, row 1, line 2, field 'tag'" in str(data_error(mixed, require_labels=False))


# --- duplicates -----------------------------------------------------------------------------


def test_warn_duplicates(caplog):
    examples = [
        Example("a", "1", 1), Example("b", "1", 2), Example("a", "1", 3),
        Example("a", "0", 4), Example("a", "1", 5), Example(["x", "y"], ["O", "O"], 6),
        Example(["x", "y"], ["O", "O"], 7),
    ]
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        assert warn_duplicates(examples, "train.csv") == 3
    [record] = caplog.records
    message = record.getMessage()
    assert "train.csv" in message and "3 duplicate" in message
    assert "row 3 repeats row 1" in message and "row 7 repeats row 6" in message


def test_no_duplicates_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        assert warn_duplicates([Example("a", 1, 1), Example("a", 2, 2)], "train.csv") == 0
    assert not caplog.records


def test_only_bad_lines_reports_them_not_missing_columns(tmp_path):
    message = str(data_error(write(tmp_path / "train.jsonl", "oops\n")))
    assert "row 1, line 1: not valid JSON" in message and "column" not in message
