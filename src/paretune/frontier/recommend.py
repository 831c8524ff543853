"""Answers to the questions a user brings to the frontier, each naming one variant and why.

    --min-metric X      the cheapest variant that reaches X (to train, and to serve)
    --budget USD        the best variant whose training costs at most USD
    --max-latency-ms M  only variants whose p50 latency (batch 1) is at most M ms count

With a scale (--train-rows), training dollars are the projected ones. "Reaches" follows the
metric's direction: accuracy >= X, but mse <= X.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from paretune.frontier.points import Point
from paretune.frontier.projection import Scale, train_cost
from paretune.frontier.table import fmt_usd

NO_PRICE = "no price in cost.json for {names}: pass --price NAME or --price USD_PER_HOUR"
NO_BENCH = "no inference.json for {names}: run `paretune bench-infer RUN`, or add --bench-missing"


@dataclass
class Answer:
    question: str
    answer: str
    choice: str | None = None  # the recommended variant, when there is one


@dataclass
class Questions:
    min_metric: float | None = None
    budget: float | None = None
    max_latency_ms: float | None = None


def answer(points: list[Point], questions: Questions, scale: Scale, greater: bool) -> list[Answer]:
    metric = next((p.metric for p in points if p.metric), "metric")
    candidates = [p for p in points if p.finished]
    answers = []
    if questions.max_latency_ms is not None:
        candidates, latency_answer = _latency_filter(candidates, questions.max_latency_ms)
        answers.append(latency_answer)
    where = f" within {questions.max_latency_ms:g} ms p50" if questions.max_latency_ms is not None else ""
    at_scale = f" (training on {scale.train_rows:,.0f} rows)" if scale.train_rows is not None else ""
    better = (lambda p: p.quality) if greater else (lambda p: -p.quality)
    if questions.min_metric is not None:
        sign = ">=" if greater else "<="
        target = f"{metric} {sign} {questions.min_metric:g}"
        reaching = [p for p in candidates if (p.quality >= questions.min_metric if greater
                                              else p.quality <= questions.min_metric)]
        answers.append(_cheapest(f"cheapest to train reaching {target}{where}{at_scale}", reaching, candidates,
                                 lambda p: train_cost(p, scale), better, NO_PRICE))
        answers.append(_cheapest(f"cheapest to serve reaching {target}{where}", reaching, candidates,
                                 lambda p: p.serve_usd_per_million, better, NO_BENCH, per_million=True))
    if questions.budget is not None:
        answers.append(_best_under_budget(candidates, questions.budget, scale, better, where + at_scale))
    if not answers:
        answers = _overview(candidates, scale, better)
    return answers


def _latency_filter(points: list[Point], limit: float) -> tuple[list[Point], Answer]:
    fast = [p for p in points if p.latency_p50_ms is not None and p.latency_p50_ms <= limit]
    unknown = [p.name for p in points if p.latency_p50_ms is None]
    text = f"{len(fast)} of {len(points)} finished variants: {', '.join(p.name for p in fast) or 'none'}"
    if unknown:
        text += "; left out, " + NO_BENCH.format(names=", ".join(unknown))
    return fast, Answer(f"serve within {limit:g} ms p50 latency (batch 1)", text)


def _cheapest(question: str, reaching: list[Point], candidates: list[Point], cost: Callable,
              better: Callable, missing: str, per_million: bool = False) -> Answer:
    if not reaching:
        if not candidates:
            return Answer(question, "no finished variant to choose from")
        best = max(candidates, key=better)
        return Answer(question, f"none reaches it; the best is {best.name} at {best.quality:.4f}")
    priced = [p for p in reaching if cost(p) is not None]
    if not priced:
        return Answer(question, "cannot rank: " + missing.format(names=", ".join(p.name for p in reaching)))
    choice = min(priced, key=lambda p: (cost(p), -better(p)))
    unit = " per million predictions" if per_million else ""
    text = f"{choice.name}: {choice.metric} {choice.quality:.4f} for {fmt_usd(cost(choice))}{unit}"
    unpriced = [p.name for p in reaching if cost(p) is None]
    if unpriced:
        text += "; not compared, " + missing.format(names=", ".join(unpriced))
    return Answer(question, text, choice.name)


def _best_under_budget(candidates: list[Point], budget: float, scale: Scale, better: Callable,
                       where: str) -> Answer:
    question = f"best {'projected ' if scale.train_rows is not None else ''}training cost <= {fmt_usd(budget)}{where}"
    priced = [p for p in candidates if train_cost(p, scale) is not None]
    if not priced:
        names = ", ".join(p.name for p in candidates) or "every variant"
        return Answer(question, "cannot tell: " + NO_PRICE.format(names=names))
    within = [p for p in priced if train_cost(p, scale) <= budget]
    if not within:
        cheapest = min(priced, key=lambda p: train_cost(p, scale))
        return Answer(question, f"nothing fits; the cheapest is {cheapest.name} at "
                                f"{fmt_usd(train_cost(cheapest, scale))}")
    choice = max(within, key=lambda p: (better(p), -train_cost(p, scale)))
    return Answer(question, f"{choice.name}: {choice.metric} {choice.quality:.4f} for "
                            f"{fmt_usd(train_cost(choice, scale))}", choice.name)


def _overview(candidates: list[Point], scale: Scale, better: Callable) -> list[Answer]:
    if not candidates:
        return [Answer("overview", "no finished variant yet")]
    best = max(candidates, key=better)
    answers = [Answer("best quality", f"{best.name}: {best.metric} {best.quality:.4f}", best.name)]
    for label, cost in (("cheapest to train", lambda p: train_cost(p, scale)),
                        ("cheapest to serve (per million)", lambda p: p.serve_usd_per_million)):
        priced = [p for p in candidates if cost(p) is not None]
        if priced:
            choice = min(priced, key=lambda p: (cost(p), -better(p)))
            answers.append(Answer(label, f"{choice.name}: {fmt_usd(cost(choice))}, {choice.metric} "
                                         f"{choice.quality:.4f}", choice.name))
    return answers
