"""pytest plugin: run the collected tests in a random order, to prove they do not depend on it.

    PYTHONPATH=scripts python -m pytest -p pytest_shuffle            # seed printed in the header
    PARETUNE_TEST_SEED=7 PYTHONPATH=scripts python -m pytest -p pytest_shuffle

Not part of the default run: a fixed order keeps module fixtures built once, which is faster.
"""
from __future__ import annotations

import os
import random

SEED = int(os.environ.get("PARETUNE_TEST_SEED", random.randrange(1_000_000)))


def pytest_report_header(config):
    return f"test order shuffled with PARETUNE_TEST_SEED={SEED}"


def pytest_collection_modifyitems(session, config, items):
    random.Random(SEED).shuffle(items)
