from __future__ import annotations

import math

import pytest

from paretune.engine.optim import default_lr
from paretune.engine.schedules import lr_multiplier


@pytest.mark.parametrize("kind", ["linear", "cosine", "exponential", "constant"])
def test_warmup_then_shape(kind):
    values = [lr_multiplier(s, kind=kind, warmup=10, total=110, min_ratio=0.01) for s in range(110)]
    assert values[0] < values[5] < values[9] <= 1.0  # linear warmup
    assert values[10] == pytest.approx(1.0)
    if kind == "constant":
        assert values[-1] == 1.0
    else:
        assert values[60] < 1.0 and values[-1] < values[60]
    if kind == "exponential":
        assert values[-1] == pytest.approx(0.01 ** (99 / 100))
    if kind == "cosine":
        assert values[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_default_lr_grows_with_batch_by_square_root_and_is_capped():
    assert default_lr(32) == pytest.approx(1e-4)
    assert default_lr(128) == pytest.approx(2e-4)
    assert default_lr(100000) == pytest.approx(3e-4)
