"""`paretune audit`: what is wrong with a run's data before paying to train on it.

One module per check (labels, duplicates, outliers, lengths, balance), one that reads the rows
(`rows.py`), one that embeds them (`embed.py`), the report (`report.py`), the filtered copy
(`clean.py`) and `run.py`, which runs them in order (docs/audit.md).
"""
