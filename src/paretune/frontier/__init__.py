"""The price-capability frontier of a sweep (or any runs): which variants are worth it.

`points` reads run folders, `pareto` decides optimality, `projection` scales costs to
production, `recommend` answers constraint questions, `table` and `plot` show it all, and
`report` ties them together into frontier.md, frontier.png and frontier.json.
"""
from __future__ import annotations

from paretune.frontier.projection import Scale
from paretune.frontier.recommend import Questions
from paretune.frontier.report import Frontier, build, build_groups, to_markdown, write

__all__ = ["Frontier", "Questions", "Scale", "build", "build_groups", "to_markdown", "write"]
