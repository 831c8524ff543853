"""Write the corpus files that cannot be typed by hand: Parquet, and a cell over the csv limit.

Run from anywhere (`python tests/bad_inputs/make_files.py`); the outputs are committed, so the
tests never need this script. Text files are edited directly.
"""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
CSV_CELL_LIMIT = 131_072  # Python's csv.field_size_limit() default

pq.write_table(pa.table({"text": ["a good film", "a dull film"], "label": [[0], [1]]}),
               HERE / "list_labels.parquet")
pq.write_table(pa.table({"text": ["a good film", "a dull film", "a fine plot"],
                         "label": ["positive", "negative", "nan"]}), HERE / "nan_labels.parquet")
(HERE / "oversize_cell.csv").write_text(
    "text,label\n" + "a" * (CSV_CELL_LIMIT + 1) + ",positive\na dull film,negative\n", encoding="utf-8"
)
