"""Image datasets into Examples: a folder per class, or a table with an image and a label column.

Every image is decoded once here (data/images.py), so bad images fail before any model is
loaded, each with its file and row, or are skipped and counted with `task.skip_bad_images`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paretune.data.examples import Example
from paretune.data.images import IMAGE_EXTENSIONS, ImageProblem, decode, folder_examples, list_images
from paretune.data.readers import infer_format, read_records
from paretune.errors import DataError, DataProblem

log = logging.getLogger("paretune.data")
_SHOWN = 5


def read_image_examples(path: Path, options, *, fmt: str | None = None, label_column: str = "label",
                        require_labels: bool = True, encoding: str = "utf-8", split: str | None = None,
                        **_: Any) -> list[Example]:
    """Every usable example of `path`; a DataError lists all problems (bad images unless skipped)."""
    name = str(path)
    if path.is_dir() and fmt is None and not _is_saved_dataset(path):
        examples = [Example(image, label, row) for row, (image, label) in enumerate(folder_examples(path), 1)]
        problems: list[DataProblem] = []
        if not examples:
            raise DataError(DataProblem(name, "holds no images in class folders (expected FOLDER/<class>/<image>)"))
    else:
        examples, problems = _table_examples(path, options.image_column, label_column, fmt, encoding, split,
                                             require_labels)
    if problems:
        raise DataError(problems)
    return usable(examples, name, options, by_file=path.is_dir())


def read_prediction_inputs(path: Path, options) -> list[Example]:
    """Images to predict: every image under a folder, the paths listed in a text file (one a line,
    relative to it), or the image column of a table; checked like training images."""
    if path.is_dir() or path.suffix.lower() in (".txt", ".lst"):
        if not path.exists():
            raise DataError(DataProblem(str(path), "file not found"))
        if not (path.is_dir() or path.is_file()):  # a FIFO would block the read for ever
            raise DataError(DataProblem(str(path), "is not a regular file (a FIFO, a device): a list of images "
                                        "is read only from a regular file"))
        listed = [Example(image, None, row) for row, image in enumerate(list_images(path), 1)]
        if not listed:
            raise DataError(DataProblem(str(path), f"holds no images ({', '.join(IMAGE_EXTENSIONS)})"))
        return usable(listed, str(path), options, by_file=path.is_dir())
    return read_image_examples(path, options, require_labels=False)


def usable(examples: list[Example], name: str, options, by_file: bool = False) -> list[Example]:
    """The examples whose image decodes; the others fail together, or are skipped and counted."""
    bad = check_images(examples, name, options, options.image_size or 224, by_file)
    if bad and not options.skip_bad_images:
        raise DataError(bad)
    if bad:
        shown = "; ".join(str(p) for p in bad[:_SHOWN])
        log.warning("%s: skipped %d of %d images that cannot be used (task.skip_bad_images): %s%s",
                    name, len(bad), len(examples), shown, " ..." if len(bad) > _SHOWN else "")
        skipped = {p.file for p in bad} if by_file else {p.row for p in bad}
        examples = [ex for ex in examples if (ex.text if by_file else ex.row) not in skipped]
    if not examples:
        raise DataError(DataProblem(name, "holds no usable images"))
    return examples


def check_images(examples: list[Example], name: str, options, size: int, by_file: bool = False) -> list[DataProblem]:
    """A problem for every example whose image cannot be used: the data file, row and field (a
    table, a list) or, `by_file`, the image file itself (a folder of images), and why."""
    problems = []
    for ex in examples:
        try:
            decode(ex.text, options.max_image_pixels, draft_size=size)
        except ImageProblem as err:
            if by_file:
                problems.append(DataProblem(str(ex.text), str(err)))
            else:
                problems.append(DataProblem(name, str(err), row=ex.row, field=options.image_column, line=ex.line))
    return problems


def _is_saved_dataset(path: Path) -> bool:
    try:
        return infer_format(path) == "hf"
    except DataError:
        return False


def _table_examples(path: Path, image_column: str, label_column: str, fmt, encoding, split,
                    require_labels: bool) -> tuple[list[Example], list[DataProblem]]:
    name = str(path)
    columns, records, problems = read_records(path, fmt, encoding, split)
    missing = [c for c in (image_column, label_column if require_labels else None) if c and c not in columns]
    if records and missing:
        present = ", ".join(columns) or "none"
        raise DataError([DataProblem(name, f"no '{c}' column (columns present: {present}); set "
                                     f"{'task.image_column' if c == image_column else 'data.label_column'}",
                                     field=c) for c in missing])
    examples = []
    for record in records:
        source, label = _source(record.values.get(image_column), path.parent), record.values.get(label_column)
        if source is None:
            problems.append(DataProblem(name, "image is empty (expected a path or the image's bytes)",
                                        row=record.row, field=image_column, line=record.line))
        elif require_labels and (label is None or (isinstance(label, str) and not label.strip())):
            problems.append(DataProblem(name, "label is missing", row=record.row, field=label_column,
                                        line=record.line))
        else:
            examples.append(Example(source, label, record.row, record.line))
    return examples, problems


def _source(value: Any, base: Path) -> str | bytes | None:
    """A path (relative to the data file), the image's bytes, or a `datasets` Image cell {bytes, path}."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None
    if isinstance(value, str) and value.strip():
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base / path)
    return None
