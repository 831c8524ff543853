"""ensemble: model/ names other runs' model folders and how their predictions are combined.

model/paretune.json records, under "form": the member model folders (relative to this model/
folder when they were given as relative paths, so a folder of runs moves as a whole), the
combining rule (average, weighted, vote, stacking), the member weights and how a member's
logits become probabilities (softmax, sigmoid, value: the task's `soft_targets`). A stacking
meta-model (a logistic regression) is stored as tensors in `meta.safetensors`, never pickled.

Loading returns one module answering `model(input_ids=..., attention_mask=...).logits`: its
logits are the log of the combined probabilities (softmax of them gives the probabilities back),
so the Predictor, the server and bench-infer use an ensemble like any model. Members that share
the ensemble's tokenizer (same vocabulary) take the ids as they are; the others get the batch's
text, decoded and re-tokenized with their own tokenizer (sequence-level tasks only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from transformers.modeling_outputs import SequenceClassifierOutput

from paretune.errors import ParetuneError
from paretune.stored.base import StoredForm, read_info

NAME = "ensemble"
# Loads one member's model/ in whatever form it is in: the registry's load_model, handed in by
# paretune.stored once it is defined (importing the registry from here would be a cycle).
load_member: Callable[..., torch.nn.Module] | None = None
META_FILE = "meta.safetensors"
EPS = 1e-7


def save(model, model_dir: Path, settings: dict[str, Any]) -> None:
    """The members are other runs: only a stacking meta-model has weights of its own to write.
    `settings["meta"]` ({"weight": [C, F], "bias": [C]}) is written here and not recorded as JSON."""
    meta = settings.pop("meta", None)
    if meta is not None:
        save_file({k: torch.as_tensor(v, dtype=torch.float32).contiguous() for k, v in meta.items()},
                  str(Path(model_dir) / META_FILE))


def member_dirs(model_dir: Path, recorded: dict[str, Any]) -> list[Path]:
    dirs = [(Path(model_dir) / p) if not Path(p).is_absolute() else Path(p) for p in recorded["members"]]
    for d in dirs:
        if not (d / "paretune.json").is_file():
            raise ParetuneError(f"{model_dir}: ensemble member {d} is missing (no paretune.json there): "
                                "the ensemble's members must stay where they were when it was made")
    return dirs


def check_members(model_dir: Path, dirs: list[Path]) -> None:
    """A member folder replaced by another run since the ensemble was made (other labels, another
    task or output type) would be combined as if it were the old one: refuse, naming it."""
    own = read_info(model_dir)
    for d in dirs:
        info = read_info(d)
        compared = (("task", _task(own), _task(info)), ("labels", own.get("labels"), info.get("labels")))
        for what, mine, theirs in compared:
            if mine != theirs:
                raise ParetuneError(f"{model_dir}: ensemble member {d} now has {what} {theirs}, not the {mine} "
                                    "the ensemble was made with (the member run was replaced): make the ensemble "
                                    "again with `paretune ensemble`")


def _task(info: dict[str, Any]) -> dict[str, Any]:
    """The task's type and options; its labels are compared on their own."""
    return {k: v for k, v in (info.get("task") or {}).items() if k != "labels"}


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    from transformers import AutoTokenizer

    recorded = recorded or {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=kwargs.get("trust_remote_code", False))
    members, tokenizers, lengths = [], [], []
    dirs = member_dirs(model_dir, recorded)
    check_members(model_dir, dirs)
    for member in dirs:
        members.append(load_member(member, auto_class, device=device, **kwargs).eval())
        tokenizers.append(AutoTokenizer.from_pretrained(member, trust_remote_code=kwargs.get("trust_remote_code", False)))
        lengths.append(int(read_info(member).get("max_length", 512)))
    meta = load_file(str(Path(model_dir) / META_FILE)) if recorded.get("rule") == "stacking" else None
    return EnsembleModel(members, tokenizers, lengths, tokenizer, recorded, meta)


def same_vocabulary(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


class EnsembleModel(torch.nn.Module):
    def __init__(self, members, tokenizers, lengths, tokenizer, recorded: dict[str, Any], meta=None):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.tokenizers, self.lengths, self.tokenizer = tokenizers, lengths, tokenizer
        self.shared = [same_vocabulary(t, tokenizer) for t in tokenizers]
        self.rule = recorded.get("rule", "average")
        self.soft = recorded.get("soft_targets", "softmax")
        weights = recorded.get("weights") or [1.0 / len(members)] * len(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        if meta is not None:
            self.register_buffer("meta_weight", meta["weight"], persistent=False)
            self.register_buffer("meta_bias", meta["bias"], persistent=False)

    def _inputs(self, i: int, input_ids, attention_mask) -> dict[str, torch.Tensor]:
        if self.shared[i]:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        texts = self.tokenizer.batch_decode(input_ids, skip_special_tokens=True)
        encoded = self.tokenizers[i](texts, padding=True, truncation=True, max_length=self.lengths[i],
                                     return_tensors="pt")
        return {k: encoded[k].to(input_ids.device) for k in ("input_ids", "attention_mask")}

    def member_probabilities(self, input_ids, attention_mask=None, **_) -> list[torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return [to_probabilities(m(**self._inputs(i, input_ids, attention_mask)).logits.float(), self.soft)
                for i, m in enumerate(self.members)]

    def forward(self, input_ids, attention_mask=None, **kwargs):
        probs = self.member_probabilities(input_ids, attention_mask)
        return SequenceClassifierOutput(logits=combine(probs, self.rule, self.soft, self.weights,
                                                       getattr(self, "meta_weight", None),
                                                       getattr(self, "meta_bias", None)))


def to_probabilities(logits: torch.Tensor, soft: str) -> torch.Tensor:
    if soft == "softmax":
        return torch.softmax(logits, dim=-1)
    if soft == "sigmoid":
        return torch.sigmoid(logits)
    return logits  # regression: values are averaged as they are


def from_probabilities(probs: torch.Tensor, soft: str) -> torch.Tensor:
    """Logits whose softmax (sigmoid) gives `probs` back; values stay values."""
    if soft == "softmax":
        return probs.clamp_min(EPS).log()
    if soft == "sigmoid":
        probs = probs.clamp(EPS, 1 - EPS)
        return probs.log() - (1 - probs).log()
    return probs


def combine(probs: list[torch.Tensor], rule: str, soft: str, weights: torch.Tensor,
            meta_weight: torch.Tensor | None = None, meta_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Members' probabilities ([batch, ..., classes] each) -> the ensemble's logits."""
    stacked = torch.stack(probs)  # [members, batch, ..., classes]
    w = weights.to(stacked.device).view(-1, *([1] * (stacked.dim() - 1)))
    if rule in ("average", "weighted"):
        return from_probabilities((stacked * w).sum(0), soft)
    if rule == "vote":  # each member's top class counts once; the averaged probability breaks ties
        votes = torch.nn.functional.one_hot(stacked.argmax(-1), stacked.shape[-1]).float().mean(0)
        return from_probabilities((votes + 1e-3 * stacked.mean(0)) / (1 + 1e-3), soft)
    if rule == "stacking":  # a logistic regression over every member's log-probabilities
        features = torch.cat([p.clamp_min(EPS).log() for p in probs], dim=-1)
        return features @ meta_weight.to(features.device).T + meta_bias.to(features.device)
    raise ParetuneError(f"unknown ensemble rule '{rule}' (known: average, weighted, vote, stacking)")


def members_of(model_dir: Path) -> list[Path]:
    return member_dirs(model_dir, read_info(model_dir).get("form") or {})


FORM = StoredForm(
    name=NAME, save=save, load=load, plain_transformers=False, counts_parameters=True, parts=members_of,
    description="an ensemble over other runs' models (model/paretune.json lists them)",
    use="an ensemble over the member runs listed in `model/paretune.json`: load with paretune's Predictor",
)
