"""paretune: fine-tune pretrained transformers at the best balance of price and capability."""
from __future__ import annotations

from paretune.version import __version__

__all__ = ["Predictor", "Run", "finetune", "resume", "__version__"]


def __getattr__(name: str):
    # Lazy: `import paretune` (and the CLI's --help) stay fast; torch loads on first use.
    if name in ("finetune", "resume", "Run"):
        import paretune.runner as module

        return getattr(module, name)
    if name == "Predictor":
        from paretune.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'paretune' has no attribute {name!r}")
