"""`paretune serve` with every forward pass made PARETUNE_TEST_DELAY_S seconds slower (tests only).

A fixed delay gives the tiny test model a known capacity that does not depend on how busy the
machine is (the delay sleeps, it does not spin), so overload and shutdown tests can keep requests
in flight on purpose. Usage: python serve_slowly.py RUN [paretune serve options]
"""
from __future__ import annotations

import os
import sys
import time

from paretune.serving import server

DELAY_S = float(os.environ.get("PARETUNE_TEST_DELAY_S", "0"))
_load_predictor = server.load_predictor


class Slow:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts, **kwargs):
        time.sleep(DELAY_S)
        return self.inner.predict(texts, **kwargs)


server.load_predictor = lambda *args, **kwargs: Slow(_load_predictor(*args, **kwargs))

if __name__ == "__main__":
    from paretune.cli import main

    sys.argv = ["paretune", "serve", *sys.argv[1:]]
    main()
