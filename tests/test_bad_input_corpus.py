"""Every file in tests/bad_inputs/ must fail with the message its case in cases.yaml names.

The cases go through `check_data`, the part of `prepare_data` that reads and checks the data (the
same path `paretune train` takes before it loads a model), so a new reader or task is covered by
dropping a file and a case into the folder. tests/test_bad_input.py checks that such a message
reaches the user through the command, with exit code 2 and no traceback.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from paretune.config.loading import config_from_dict
from paretune.data.prepare import check_data
from paretune.errors import DataError

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
# Where a problem is: "<file>, row N" (then line and field where known), or just "<file>".
LOCATED = {"row": r"[\w-]+\.\w+(?: \(held-out \d+%\))?, row \d+", "file": r"[\w-]+\.\w+\b"}


def read_case(case: dict) -> DataError:
    data = {"train": str(CORPUS / case["file"]), "validation": str(CORPUS / case["file"]),
            "cache_dir": None}
    for key, value in (case.get("data") or {}).items():
        data[key] = str(CORPUS / value) if key in ("validation", "test") and value else value
    config = config_from_dict({"task": case.get("task", {"type": "classification"}), "data": data})
    with pytest.raises(DataError) as caught:
        check_data(config)
    return caught.value


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_its_message(name):
    case = CASES[name]
    message = str(read_case(case))
    for part in case["expect"]:
        assert part in message, f"{part!r} not in:\n{message}"
    where = LOCATED[case.get("where", "row")]
    assert re.search(where, message), f"the message does not locate the problem ({where}):\n{message}"


def test_every_corpus_file_has_a_case():
    used = {case["file"] for case in CASES.values()}
    used |= {value for case in CASES.values() for value in (case.get("data") or {}).values()}
    files = {path.name for path in CORPUS.iterdir() if path.name not in ("cases.yaml", "make_files.py")}
    assert files - used == set(), "files in tests/bad_inputs/ without a case in cases.yaml"
