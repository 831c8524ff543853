"""Scoring predictions: classification, multi-label, regression and NER metrics, and a text report.

Every metric function returns a plain dict of Python floats and ints so a run can write it to JSON
as is; `report.format_metrics` turns such a dict into a table for the terminal.
"""
