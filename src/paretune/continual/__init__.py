"""Continual learning: `paretune train CONFIG --from RUN` continues a finished run on new data.

`previous.py` opens the old run and loads its model with its head (grown for new labels when
allowed), `replay.py` mixes some of its training rows into the new data, `penalty.py` holds the
L2-SP and EWC pulls toward its weights, `run.py` puts them together through the runner's Seam and
records the lineage (docs/continual.md).
"""
