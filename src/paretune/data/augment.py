"""`data.augment`: text augmentation applied on the fly to training batches only.

Each time a training example is drawn into a batch its token ids are perturbed afresh (so every
epoch sees a different version): `token_dropout` deletes tokens, `token_swap` swaps a token with
its right neighbour, `token_mask` replaces tokens with the tokenizer's mask token; each is a
per-token probability. The first and last ids ([CLS], [SEP]) are never touched. Validation, test
and prediction never see it: only the training set is wrapped. Tasks with per-token labels (NER)
are refused, since moving tokens would misalign their tags. Off by default: not yet shown to help
(bench/RESULTS.md, "Augmentation").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from paretune.data.encoded import Encoded
from paretune.errors import ConfigError


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token_dropout: float = Field(0.0, ge=0, lt=1, description="Chance each token is deleted.")
    token_swap: float = Field(0.0, ge=0, lt=1, description="Chance each token swaps with its right neighbour.")
    token_mask: float = Field(0.0, ge=0, lt=1, description="Chance each token becomes the mask token.")
    seed: int = Field(0, description="Seed of the perturbations.")

    @property
    def active(self) -> bool:
        return bool(self.token_dropout or self.token_swap or self.token_mask)


def perturb(ids: np.ndarray, options: AugmentConfig, mask_id: int | None, rng: np.random.Generator) -> np.ndarray:
    """One perturbed copy of a row of token ids (specials at both ends kept)."""
    if len(ids) <= 3:
        return ids
    head, body, tail = ids[:1], ids[1:-1].copy(), ids[-1:]
    if options.token_swap:
        for i in np.flatnonzero(rng.random(len(body) - 1) < options.token_swap):
            body[i], body[i + 1] = body[i + 1], body[i]
    if options.token_mask and mask_id is not None:
        body[rng.random(len(body)) < options.token_mask] = mask_id
    if options.token_dropout:
        keep = rng.random(len(body)) >= options.token_dropout
        if keep.any():  # never drop every word
            body = body[keep]
    return np.concatenate([head, body, tail])


class _PerturbedRows(Sequence):
    """The rows of `base`, perturbed each time one is read; iteration gives the originals (lengths
    for batching stay those of the stored rows)."""

    def __init__(self, base, options: AugmentConfig, mask_id: int | None):
        self.base, self.options, self.mask_id = base, options, mask_id
        self.rng = np.random.default_rng(options.seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return perturb(self.base[i], self.options, self.mask_id, self.rng)

    def __iter__(self):
        return iter(self.base)


def augmented(train: Encoded, options: AugmentConfig | None, tokenizer, word_level: bool) -> Encoded:
    """`train` whose input_ids are perturbed on every read, or `train` itself when augment is off."""
    if options is None or not options.active:
        return train
    if word_level or set(train.arrays) != {"input_ids"}:
        raise ConfigError("data.augment works on tasks whose examples are token ids with one label each "
                          "(classification, multilabel, regression), not per-token labels")
    if options.token_mask and tokenizer.mask_token_id is None:
        raise ConfigError("data.augment.token_mask: the tokenizer has no mask token")
    rows = _PerturbedRows(train.input_ids, options, tokenizer.mask_token_id)
    return Encoded(train.labels, size_key=train.size_key, input_ids=rows)
