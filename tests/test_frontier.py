"""`paretune frontier` on synthetic run folders: marks, answers, projection, prices, files.

The run folders hold only the JSON files the frontier reads (as `paretune train` and
`paretune bench-infer` write them), so these tests train nothing and take about a second.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from paretune.errors import ParetuneError
from paretune.frontier import Questions, Scale, build, to_markdown, write
from paretune.frontier.projection import projected_train_usd, serve_usd_per_month

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(folder: Path, *, method: str, quality: float | None, usd: float | None = None,
             wall_s: float = 100.0, data_prep_s: float = 10.0, train_s: float = 70.0, train_rows: int = 1000,
             usd_per_million: float | None = None, p50: float | None = None, throughput: float = 1000.0,
             metric: str = "accuracy", device_hours: float | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": {"name": method}}))
    (folder / "data.json").write_text(json.dumps({"train_rows": train_rows, "validation_rows": 100}))
    cost = {"device": "cpu", "device_name": "Test CPU", "device_count": 1, "wall_s": wall_s,
            "device_hours": device_hours if device_hours is not None else wall_s / 3600,
            "phases_s": {"data_prep_s": data_prep_s, "train_s": train_s, "final_eval_s": wall_s - data_prep_s - train_s}}
    if usd is not None:
        cost.update(usd=usd, price={"name": "test-cpu", "usd_per_hour": 0.1})
    (folder / "cost.json").write_text(json.dumps(cost))
    if usd_per_million is not None or p50 is not None:
        (folder / "inference.json").write_text(json.dumps({
            "latency_ms": {"p50": p50, "p95": p50, "p99": p50}, "throughput_per_s": throughput,
            "size_mib": 90.0, "usd_per_million": usd_per_million}))
    if quality is not None:
        (folder / "metrics.json").write_text(json.dumps({
            "validation": {metric: quality, "loss": 0.3}, "metric": metric, "trainable_percent": 1.5}))
    return folder


@pytest.fixture()
def sweep_dir(tmp_path) -> Path:
    """Five finished variants (full is best and dearest) and one failed, as a sweep writes them."""
    root = tmp_path / "sweep"
    runs = root / "runs"
    make_run(runs / "full", method="full", quality=0.95, usd=3.0, usd_per_million=0.50, p50=30.0)
    make_run(runs / "lora", method="lora", quality=0.93, usd=1.0, usd_per_million=0.50, p50=12.0)
    make_run(runs / "freeze", method="freeze", quality=0.90, usd=0.5, usd_per_million=0.20, p50=8.0)
    make_run(runs / "prompt", method="prompt", quality=0.85, usd=0.8, usd_per_million=0.60, p50=15.0)
    make_run(runs / "ia3", method="ia3", quality=0.91, usd=1.0)  # not benchmarked yet
    records = {name: {"name": name, "status": "finished", "run_dir": f"runs/{name}"}
               for name in ("full", "lora", "freeze", "prompt", "ia3")}
    records["broken"] = {"name": "broken", "status": "failed", "run_dir": "runs/broken",
                         "error": "DataError: no text column"}
    (root / "sweep.json").write_text(json.dumps({"name": "sweep", "variants": records}))
    return root


def marks(frontier, flag: str) -> set[str]:
    return {p.name for p in frontier.points if p.extra.get(flag)}


def test_pareto_marks_against_training_and_serving_cost(sweep_dir):
    frontier = build([sweep_dir])
    assert frontier.metric == "accuracy" and frontier.greater
    assert marks(frontier, "pareto_train") == {"full", "lora", "freeze"}  # prompt and ia3 cost more for less
    assert marks(frontier, "pareto_serve") == {"full", "freeze"}  # lora serves at full's price, worse
    assert [p.name for p in frontier.points][:5] == ["full", "lora", "ia3", "freeze", "prompt"]
    broken = next(p for p in frontier.points if p.name == "broken")
    assert broken.status == "failed" and "no text column" in broken.error


def test_min_metric_budget_and_latency_answers(sweep_dir):
    frontier = build([sweep_dir], questions=Questions(min_metric=0.92, budget=1.0))
    train, serve, budget = frontier.answers
    assert train.question == "cheapest to train reaching accuracy >= 0.92"
    assert train.choice == "lora"  # 0.93 for $1 beats full's 0.95 for $3
    assert serve.choice == "full"  # full and lora both serve at $0.50: the better one
    assert budget.choice == "lora"  # best quality for <= $1 (ia3 costs the same and is worse)

    frontier = build([sweep_dir], questions=Questions(min_metric=0.92, max_latency_ms=10))
    texts = [a.answer for a in frontier.answers]
    assert "freeze" in texts[0] and "ia3" in texts[0]  # freeze is fast enough; ia3 has no latency measured
    assert "none reaches it; the best is freeze" in texts[1]

    frontier = build([sweep_dir], questions=Questions(budget=0.1))
    assert "nothing fits; the cheapest is freeze" in frontier.answers[0].answer
    frontier = build([sweep_dir], questions=Questions(min_metric=0.99))
    assert "none reaches it; the best is full at 0.9500" in frontier.answers[0].answer


def test_projection_math():
    from paretune.frontier.points import Point

    point = Point("v", Path("."), "finished", quality=0.9, train_usd=1.0, run_s=100.0, scaled_s=80.0,
                  train_rows=1000, serve_usd_per_million=0.5)
    # 20 s stay fixed, 80 s grow 1000x: 80,020 s at $0.01/s.
    assert projected_train_usd(point, 1_000_000) == pytest.approx(800.2)
    assert serve_usd_per_month(point, 1e8) == pytest.approx(50.0)
    assert projected_train_usd(point, 1000) == pytest.approx(1.0)


def test_projection_in_table_and_answers(sweep_dir):
    frontier = build([sweep_dir], scale=Scale(train_rows=1e6, predictions_per_month=1e8),
                     questions=Questions(budget=500))
    freeze = next(p for p in frontier.points if p.name == "freeze")
    assert freeze.extra["train_usd_at_scale"] == pytest.approx(0.5 * 80020 / 100)
    assert freeze.extra["serve_usd_per_month"] == pytest.approx(20.0)
    assert frontier.answers[0].choice == "freeze"  # lora would cost $800 at this scale
    text = to_markdown(frontier)
    assert "train $ @1,000,000 rows" in text and "serve $/month @100,000,000" in text


def test_price_option_replaces_the_runs_prices(sweep_dir):
    frontier = build([sweep_dir], price="3.6")
    full = next(p for p in frontier.points if p.name == "full")
    assert full.train_usd == pytest.approx(100 / 3600 * 3.6)  # device-hours x $3.6
    assert full.serve_usd_per_million == pytest.approx(3.6 / 3600 / 1000 * 1e6)  # from throughput
    assert "--price" in frontier.notes[0]
    with pytest.raises(ParetuneError, match="unknown price"):
        build([sweep_dir], price="no-such-price")


def test_missing_price_gives_a_clear_message(tmp_path):
    make_run(tmp_path / "runs" / "a", method="full", quality=0.9)
    make_run(tmp_path / "runs" / "b", method="lora", quality=0.8)
    frontier = build([tmp_path / "runs"], questions=Questions(min_metric=0.5, budget=1))
    assert frontier.answers[0].answer.startswith("cannot rank: no price in cost.json for a, b: pass --price")
    assert "cannot tell" in frontier.answers[2].answer
    assert any("training dollars missing" in note for note in frontier.notes)
    assert marks(frontier, "pareto_train") == set()


def test_lower_is_better_metric(tmp_path):
    make_run(tmp_path / "a", method="full", quality=0.10, usd=2.0, metric="mse")
    make_run(tmp_path / "b", method="lora", quality=0.20, usd=1.0, metric="mse")
    make_run(tmp_path / "c", method="ia3", quality=0.30, usd=1.5, metric="mse")
    frontier = build([tmp_path / "a", tmp_path / "b", tmp_path / "c"], questions=Questions(min_metric=0.25))
    assert not frontier.greater
    assert marks(frontier, "pareto_train") == {"a", "b"}
    assert frontier.answers[0].choice == "b" and "mse <= 0.25" in frontier.answers[0].question


def test_runs_with_different_metrics_need_metric_option(tmp_path):
    make_run(tmp_path / "a", method="full", quality=0.9, usd=1.0)
    make_run(tmp_path / "b", method="full", quality=0.8, usd=1.0, metric="f1")
    with pytest.raises(ParetuneError, match="different metrics.*--metric"):
        build([tmp_path])
    assert build([tmp_path], metric="f1").points[0].name == "b"


def test_run_folders_from_several_places_join(sweep_dir, tmp_path):
    compressed = make_run(tmp_path / "elsewhere" / "lora", method="lora", quality=0.92, usd=0.2)
    frontier = build([sweep_dir, compressed])
    names = {p.name for p in frontier.points}
    assert {"sweep/lora", "elsewhere/lora", "full"} <= names  # same name: told apart by folder
    assert "elsewhere/lora" in marks(frontier, "pareto_train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParetuneError, match="not a sweep folder"):
        build([tmp_path / "empty"])


def test_files_written_and_png_is_valid(sweep_dir):
    import matplotlib.image

    written = write(build([sweep_dir], questions=Questions(min_metric=0.9)), sweep_dir)
    png = written["png"].read_bytes()
    assert png.startswith(PNG_MAGIC)
    height, width, _ = matplotlib.image.imread(written["png"]).shape
    assert width > height > 100  # two panels side by side
    md = written["md"].read_text()
    rows = {line.split("|")[2].strip(): line.split("|")[1].strip() for line in md.splitlines()
            if line.startswith("| ") and line.count("|") > 10}
    assert rows["full"] == "T S" and rows["lora"] == "T" and rows["prompt"] == ""
    assert "![frontier](frontier.png)" in md
    data = json.loads(written["json"].read_text())
    assert {p["name"] for p in data["points"] if p.get("pareto_train")} == {"full", "lora", "freeze"}


def test_cli_prints_the_table_and_json(sweep_dir, tmp_path):
    from paretune.cli import _register, app

    _register()
    runner = CliRunner()
    done = runner.invoke(app, ["frontier", str(sweep_dir), "--min-metric", "0.92", "--output", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert "cheapest to train reaching accuracy >= 0.92" in done.output
    assert (tmp_path / "out" / "frontier.png").is_file()
    done = runner.invoke(app, ["frontier", str(sweep_dir), "--json", "--output", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output.strip().splitlines()[-1])
    assert data["metric"] == "accuracy" and len(data["points"]) == 6


def test_serving_costs_within_five_percent_do_not_split_the_frontier(sweep_dir):
    runs = sweep_dir / "runs"
    (runs / "lora" / "inference.json").write_text(json.dumps({"latency_ms": {"p50": 12.0}, "usd_per_million": 0.103}))
    (runs / "freeze" / "inference.json").write_text(json.dumps({"latency_ms": {"p50": 8.0}, "usd_per_million": 0.099}))
    frontier = build([sweep_dir])
    assert "freeze" not in marks(frontier, "pareto_serve")  # 4% cheaper is noise; lora is better
    assert {"lora", "full"} <= marks(frontier, "pareto_serve")
    assert "within 5% of each other count as equal" in to_markdown(frontier)


def test_min_metric_is_drawn_as_a_labelled_line_and_saved(sweep_dir):
    from paretune.frontier.plot import render
    from paretune.frontier.projection import train_cost

    frontier = build([sweep_dir], questions=Questions(min_metric=0.92))
    figure = render(frontier.points, greater=True, train_cost=lambda p: train_cost(p, frontier.scale),
                    train_label="training $", title="t", threshold=frontier.min_metric)
    lines = [line for axes in figure.axes for line in axes.get_lines() if line.get_gid() == "min-metric"]
    assert len(lines) == 2 and all(list(line.get_ydata()) == [0.92, 0.92] for line in lines)  # both panels
    assert "--min-metric 0.92" in [t.get_text() for t in figure.legends[0].get_texts()]
    assert not any(axes.get_legend() for axes in figure.axes)  # one legend, outside the panels
    data = json.loads(write(frontier, sweep_dir)["json"].read_text())
    assert data["min_metric"] == 0.92 and data["cost_tie_tolerance"] == 0.05


def test_generative_runs_rank_by_their_answers_and_mixed_tasks_get_a_table_each(tmp_path):
    from paretune.frontier import build_groups

    runs = tmp_path / "runs"
    make_run(runs / "sentiment", method="full", quality=0.93, usd=1.0)
    for name, exact, perplexity, usd in (("chat", 0.98, 1.03, 2.0), ("chat-int8-dynamic", 0.38, 4.41, 0.5)):
        run = make_run(runs / name, method="lora", quality=perplexity, usd=usd, metric="perplexity",
                       usd_per_million=usd, p50=10.0)
        (run / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "lora"}, "task": {"type": "generation"}}))
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["validation"]["exact_match"] = exact  # answers scored after training
        (run / "metrics.json").write_text(json.dumps(metrics))
    groups = build_groups([runs])
    assert [(g.group, g.metric) for g in groups] == [("generation: exact_match", "exact_match"), ("accuracy", "accuracy")]
    chat = groups[0]
    assert [p.name for p in chat.points] == ["chat", "chat-int8-dynamic"] and chat.greater
    assert marks(chat, "pareto_serve") == {"chat", "chat-int8-dynamic"}  # cheaper but worse: both optimal
    assert build([runs / "chat", runs / "chat-int8-dynamic"]).metric == "exact_match"
    assert build([runs], metric="perplexity").points[0].name == "chat"  # --metric ranks everything by one

    from paretune.cli import _register, app

    _register()
    done = CliRunner().invoke(app, ["frontier", str(runs)])
    assert done.exit_code == 0, done.output
    assert "rank by 2 different metrics: one frontier each" in done.output
    assert (runs / "frontier-accuracy.md").is_file() and (runs / "frontier-generation-exact-match.png").is_file()
    assert "![frontier](frontier-generation-exact-match.png)" in (runs / "frontier-generation-exact-match.md").read_text()
    shown = json.loads(CliRunner().invoke(app, ["frontier", str(runs), "--json"]).output.strip().splitlines()[-1])
    assert [g["metric"] for g in shown["groups"]] == ["exact_match", "accuracy"]


def test_a_preference_run_ranks_by_its_answers_not_its_loss(tmp_path):
    """A DPO run's own metric is its preference loss; scored answers are what it is compared by."""
    from paretune.frontier.points import ranking_metric

    assert ranking_metric({"metric": "loss", "validation": {"loss": 0.6, "exact_match": 0.7}}) == "exact_match"
    assert ranking_metric({"metric": "loss", "validation": {"loss": 0.6}}) == "loss"
    assert ranking_metric({"metric": "accuracy", "validation": {"accuracy": 0.9, "exact_match": 0.1}}) == "accuracy"
