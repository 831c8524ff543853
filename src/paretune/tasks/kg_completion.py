"""Knowledge-graph completion: a text encoder fine-tuned as a bi-encoder ranks every entity.

Rows are triples (head, relation, tail; data/triples.py); entities have a text (an entity file of
id, text: for WordNet, lemmas and gloss). As in SimKGC (Wang et al., ACL 2022), a query is the
head's text with the relation's name, a candidate is an entity's text, both encoded by the same
model and mean-pooled; training is InfoNCE over the batch: each query against every tail and head
in the batch, with an additive margin on the gold score and a fixed temperature. Three of SimKGC's
additions pay for no extra model: the batch's heads are candidates too ("self-negatives": a
query's own head is the most tempting wrong answer); each triple also trains the inverse query
(tail + "inverse relation" -> head; Lacroix et al., 2018), what the head-prediction half of the
evaluation asks; in-batch candidates that are true answers of a query in training (copies of the
gold entity, the other hyponyms of `mammal`) are masked, never counted as negatives.

Evaluation is the filtered ranking protocol (Bordes et al., 2013) over ALL entities, in both
directions: each entity is embedded once per evaluation (`before_predicting`), each query scored
against the whole table, and the other known true answers (training, validation and test triples)
removed before the gold answer's rank is taken; a labelled example's outputs are its two ranks.
Ties count half (PyKEEN's "realistic" rank), so a model that scores everything alike gets the
mean rank, not rank 1. Prediction ranks the same table.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.data.collation import pad_rows
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.data.triples import read_entities, read_triples
from paretune.errors import ConfigError, ParetuneError
from paretune.tasks.base import Task, TaskOptions, check_known

log = logging.getLogger("paretune")
HITS_AT = (1, 3, 10)
ENTITY_BATCH = 256  # entity texts embedded per forward pass
QUERY_CHUNK = 1024  # queries scored against the whole table at once (bounds the score matrix)


class KgCompletionOptions(TaskOptions):
    type: Literal["kg-completion"] = "kg-completion"
    entities: str | None = Field(
        None, description="Entity file (id, text: TSV/CSV/JSONL); relative to the training file's folder; "
        "default entities.tsv beside the training file.")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature of the in-batch InfoNCE loss.")
    margin: float = Field(0.02, ge=0, description="Additive margin taken off the gold cosine (SimKGC).")
    inverse: bool = Field(True, description="Also train tail + inverse relation -> head from each triple.")
    top_k: int = Field(10, ge=1, description="Tails each prediction returns.")
    entity_max_length: int | None = Field(
        None, ge=8, description="Tokens of an entity's text; default (settled at training) data.max_length.")
    known_triples: list[str] = Field(
        default_factory=list, description="Triple files whose true answers the filtered ranking leaves out "
        "besides the evaluated one; settled to the run's train (first), validation and test files. The "
        "training file's triples are also never in-batch negatives of each other.")


class KgCompletionTask(Task):
    name = "kg-completion"
    options = KgCompletionOptions
    config: KgCompletionOptions
    auto_model = "AutoModel"  # no head: the pooled text is the embedding
    peft_task_type = "FEATURE_EXTRACTION"
    default_metric = "mrr"
    metric_names = ("mrr", "hits@1", "hits@3", "hits@10", "mean_rank")
    lower_is_better = frozenset({"loss", "mean_rank"})
    stratify = False
    cache_encoding = False  # encode keeps the tokenizer and tokenizes the entity table
    read_logits = "embedding = output.last_hidden_state.mean(1)  # one text: mean over its tokens"

    def __init__(self, config: KgCompletionOptions, label_names: list[str]):
        super().__init__(config, label_names)  # the labels are the training relations
        # None only where no data was read (a task made from options alone): no entity to rank.
        self.entity_texts = read_entities(_entity_file(config)) if config.entities else {}
        self.entity_ids = list(self.entity_texts)
        self.entity_index = {e: i for i, e in enumerate(self.entity_ids)}
        # Every true answer seen in any parsed file: the filter of the ranking protocol.
        self.known_tails: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.known_heads: dict[tuple[int, int], set[int]] = defaultdict(set)
        # Training triples only: in-batch candidates that are true answers are not negatives.
        self.train_tails: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.train_heads: dict[tuple[int, int], set[int]] = defaultdict(set)
        self._read_known_triples()
        self.tokenizer = None
        self.entity_tokens: list[np.ndarray] | None = None
        self.entity_table: torch.Tensor | None = None  # unit-length embeddings, one row an entity
        self._table_model: int | None = None  # id() of the model the table was made with

    # --- reading ------------------------------------------------------------------------
    @classmethod
    def read_examples(cls, path, config: KgCompletionOptions, **options) -> list[Example]:
        entities = Path(config.entities or "entities.tsv")
        if options.get("split", "train") == "train" and not entities.is_absolute():
            # Settled to an absolute path, saved with the run: prediction reads the same file.
            config.entities = str(Path(path).resolve().parent / entities)
            _entity_file(config)  # a missing entity file is named before any triple is read
        resolved = str(Path(path).resolve())
        if options.get("split") == "train":  # first: its triples also mask in-batch negatives
            config.known_triples = [resolved, *(p for p in config.known_triples if p != resolved)]
        elif options.get("split") and resolved not in config.known_triples:
            config.known_triples = [*config.known_triples, resolved]
        return read_triples(path, options.get("fmt"), options.get("encoding") or "utf-8")

    def _read_known_triples(self) -> None:
        """The run's triple files, so `paretune eval` of one file filters as training did."""
        for i, path in enumerate(self.config.known_triples):
            if not Path(path).is_file():
                log.warning("kg-completion: %s is gone: its triples are no longer filtered from rankings", path)
                continue
            for ex in read_triples(path):
                head, relation, tail = ex.label
                if head in self.entity_index and tail in self.entity_index and relation in self.label_to_id:
                    h, r, t = self.parse_label(ex.label)
                    if i == 0:
                        self.train_tails[(h, r)].add(t)
                        self.train_heads[(t, r)].add(h)

    @classmethod
    def infer_labels(cls, examples: list[Example], config: TaskOptions) -> list[str]:
        return sorted({ex.label[1] for ex in examples})

    def check_raw(self, raw: Any) -> list[str]:
        head, relation, tail = raw
        unknown = [f"{side} {e!r}" for side, e in (("head", head), ("tail", tail)) if e not in self.entity_index]
        if unknown:
            raise ValueError(f"unknown entity: {' and '.join(unknown)} not in the entity file {self.config.entities}")
        if relation not in self.label_to_id:
            raise ValueError(f"relation {relation!r} is not in the training triples (known: {', '.join(self.label_names)})")
        return []  # relations are no classes to balance: no single-example-class warnings

    def parse_label(self, raw: Any) -> np.ndarray:
        head, relation, tail = raw
        h, r, t = self.entity_index[head], self.label_to_id[relation], self.entity_index[tail]
        self.known_tails[(h, r)].add(t)
        self.known_heads[(t, r)].add(h)
        return np.array([h, r, t], dtype=np.int64)

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    # --- encoding -----------------------------------------------------------------------
    def use_preprocessor(self, preprocessor) -> None:
        self.tokenizer = preprocessor

    def _tokenize_entities(self, tokenizer, max_length: int | None = None) -> None:
        if self.config.entity_max_length is None:
            self.config.entity_max_length = max_length  # saved with the run: prediction cuts texts alike
        if self.entity_tokens is None or self.tokenizer is not tokenizer:
            texts = [self.entity_texts[e] for e in self.entity_ids]
            ids = tokenizer(texts, truncation=True, max_length=self.config.entity_max_length)["input_ids"]
            self.entity_tokens = [np.asarray(row, dtype=np.int64) for row in ids]
        self.tokenizer = tokenizer

    def query_parts(self, example: Example) -> tuple[str, str]:
        """(head, relation) of a triple or of a prediction input ("head<TAB>relation", "head | relation")."""
        if isinstance(example.label, tuple):
            return example.label[0], example.label[1]
        parts = list(example.text) if isinstance(example.text, (list, tuple)) else (
            example.text.split("\t") if "\t" in example.text else example.text.split(" | "))
        if len(parts) != 2:
            raise ParetuneError(f"input {example.row}: give a head entity and a relation, as \"head<TAB>relation\" "
                                f"or \"head | relation\"; got {example.text!r}")
        head, relation = (p.strip() for p in parts)
        try:
            check_known(head, self.entity_index, "head entity")
            check_known(relation, self.label_to_id, "relation")
        except ValueError as err:
            raise ParetuneError(f"input {example.row}: {err}") from None
        return head, relation

    def _queries(self, tokenizer, entities: list[str], relations: list[str], inverse: bool,
                 max_length: int) -> list[np.ndarray]:
        """Token ids of "entity text [SEP] (inverse) relation words", the entity text cut first."""
        words = [("inverse " if inverse else "") + r.strip("_").replace("_", " ") for r in relations]
        ids = tokenizer([self.entity_texts[e] for e in entities], words, truncation="only_first",
                        max_length=max_length)["input_ids"]
        return [np.asarray(row, dtype=np.int64) for row in ids]

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        self._tokenize_entities(tokenizer, max_length)
        heads, relations = zip(*[self.query_parts(ex) for ex in examples]) if examples else ((), ())
        queries = self._queries(tokenizer, list(heads), list(relations), False, max_length)
        if targets is None:  # prediction input: the forward query only
            return Encoded(input_ids=queries)
        tails = [ex.label[2] for ex in examples]
        inverse = self._queries(tokenizer, tails, list(relations), True, max_length)
        return Encoded(np.stack(targets), input_ids=queries, inverse_ids=inverse)

    def encoding_key(self) -> dict[str, Any]:
        return {**super().encoding_key(), "entities": self.entity_ids}

    # --- batches: [forward queries, (inverse queries), tails, heads] in one forward pass --
    def collate(self, encoded: Encoded, indices: list[int], pad_id: int, inverse: bool = True) -> dict[str, torch.Tensor]:
        rows = [encoded.input_ids[i] for i in indices]
        if encoded.labels is not None:
            triples = encoded.labels[indices]
            rows += [encoded.inverse_ids[i] for i in indices] if inverse else []
            rows += [self.entity_tokens[t] for t in triples[:, 2]] + [self.entity_tokens[h] for h in triples[:, 0]]
        ids = pad_rows(rows, max(len(r) for r in rows), pad_id)
        mask = pad_rows([np.ones(len(r)) for r in rows], ids.shape[1], 0)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                 "index": torch.as_tensor(indices, dtype=torch.int64)}
        if encoded.labels is not None:
            batch["labels"] = torch.from_numpy(encoded.labels[indices])
        return batch

    def train_collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        return self.collate(encoded, indices, pad_id, inverse=self.config.inverse)

    def forward(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-length mean-pooled embeddings of every row of the batch."""
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(pooled.float(), dim=-1)

    # --- loss -----------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """InfoNCE of every query against the batch's tails and heads (see the module docstring)."""
        batch = len(labels)
        directions = len(logits) // batch - 2  # 1: forward queries only; 2: with inverse queries
        queries, candidates = logits[: directions * batch], logits[directions * batch:]
        labels = labels.to(logits.device)
        candidate_ids = torch.cat([labels[:, 2], labels[:, 0]])
        gold_ids = torch.cat([labels[:, 2], labels[:, 0]][:directions])
        gold_column = torch.arange(directions * batch, device=logits.device)  # tail i at i, head i at batch + i
        cosine = queries @ candidates.T
        is_gold = torch.zeros_like(cosine, dtype=torch.bool)
        is_gold[gold_column, gold_column] = True
        copies = (candidate_ids[None, :] == gold_ids[:, None]) & ~is_gold  # the gold entity elsewhere in the batch
        true_answers = self._true_in_batch(labels.cpu().numpy(), candidate_ids.tolist(), directions).to(logits.device)
        masked = (copies | true_answers) & ~is_gold
        scores = (cosine - self.config.margin * is_gold).masked_fill(masked, float("-inf")) / self.config.temperature
        return F.cross_entropy(scores, gold_column)

    def _true_in_batch(self, triples: np.ndarray, candidates: list[int], directions: int) -> torch.Tensor:
        """[query, candidate]: the candidate is another true answer of the query in training
        (SimKGC: e.g. every hyponym of `mammal` in the batch answers `mammal, inverse hypernym`)."""
        answers = [self.train_tails.get((h, r), ()) for h, r, _ in triples]
        if directions == 2:
            answers += [self.train_heads.get((t, r), ()) for _, r, t in triples]
        return torch.tensor([[c in known for c in candidates] for known in answers], dtype=torch.bool)

    # --- evaluation and prediction ----------------------------------------------------------
    @torch.no_grad()
    def before_predicting(self, model, device, autocast=nullcontext, refresh: bool = True) -> None:
        """Embed every entity once: before each evaluation (the weights changed), and once per
        model for prediction (a served model's table is reused by every request)."""
        if not refresh and self.entity_table is not None and self._table_model == id(model):
            return
        if self.entity_tokens is None:
            if self.tokenizer is None:
                raise ParetuneError("kg-completion: no tokenizer given to the task to read the entity texts with")
            self._tokenize_entities(self.tokenizer)
        pad = self.tokenizer.pad_token_id or 0
        order = np.argsort([len(t) for t in self.entity_tokens])  # little padding
        parts = []
        for start in range(0, len(order), ENTITY_BATCH):
            chosen = order[start:start + ENTITY_BATCH]
            rows = [self.entity_tokens[i] for i in chosen]
            ids = torch.from_numpy(pad_rows(rows, max(len(r) for r in rows), pad)).to(device)
            mask = torch.from_numpy(pad_rows([np.ones(len(r)) for r in rows], ids.shape[1], 0)).to(device)
            with autocast():
                parts.append(self.forward(model, {"input_ids": ids, "attention_mask": mask}).cpu())
        table = torch.cat(parts)[torch.from_numpy(np.argsort(order))]
        self.entity_table, self._table_model = table, id(model)

    def embedding_table(self) -> tuple[list[str], np.ndarray] | None:
        return None if self.entity_table is None else (self.entity_ids, self.entity_table.numpy())

    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per labelled example: the filtered rank of its tail and of its head; per prediction
        input: its query embedding (`readable` ranks it)."""
        n = len(batch["index"])
        embeddings = logits.detach().float().cpu()
        if "labels" not in batch:
            return list(embeddings.numpy())
        if self.entity_table is None:
            raise ParetuneError("kg-completion: no entity table (before_predicting was not called)")
        triples = batch["labels"].numpy()
        tails = self._ranks(embeddings[:n], triples[:, 2], [self.known_tails[(h, r)] for h, r, _ in triples])
        heads = self._ranks(embeddings[n:2 * n], triples[:, 0], [self.known_heads[(t, r)] for _, r, t in triples])
        return list(np.stack([tails, heads], axis=1))

    def metrics(self, outputs: list[np.ndarray], targets: list[Any]) -> dict[str, Any]:
        if not outputs:
            return {name: None for name in self.metric_names}
        return ranking_metrics(np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs]))

    def _ranks(self, queries: torch.Tensor, gold: np.ndarray, known: list[set[int]]) -> np.ndarray:
        ranks = []
        for start in range(0, len(queries), QUERY_CHUNK):
            part = slice(start, start + QUERY_CHUNK)
            scores = queries[part] @ self.entity_table.T
            ranks.append(filtered_ranks(scores, torch.from_numpy(gold[part]), known[part]))
        return np.concatenate(ranks)

    def readable(self, output: np.ndarray, example: Example, all_scores: bool = False) -> dict[str, Any]:
        head, relation = self.query_parts(example)
        scores = self.entity_table @ torch.from_numpy(np.asarray(output[: self.entity_table.shape[1]]))
        scores[self.entity_index[head]] = float("-inf")  # no self-loops in a graph the task reads
        top = torch.topk(scores, min(self.config.top_k, len(scores) - 1))
        return {"head": head, "relation": relation,
                "tails": [{"entity": self.entity_ids[i], "text": self.entity_texts[self.entity_ids[i]],
                           "score": round(float(s), 6)} for s, i in zip(top.values.tolist(), top.indices.tolist())]}

    def sample_input(self) -> Any:
        return f"{self.entity_ids[0]}\t{self.label_names[0]}"

    def inspect(self, examples: list[Example], tokenizer, max_length: int, shown: int = 3) -> list[str]:
        targets = self.parse(examples[:shown], "data", "triple")
        encoded = self.encode(examples[:shown], targets, tokenizer, max_length)
        return [f"row {ex.row}: {tokenizer.decode(encoded.input_ids[i].tolist())!r} -> "
                f"{tokenizer.decode(self.entity_tokens[int(targets[i][2])].tolist())!r}"
                for i, ex in enumerate(examples[:shown])]


def _entity_file(config: KgCompletionOptions) -> Path:
    path = Path(config.entities)
    if not path.is_file():
        raise ConfigError(f"task.entities: {path} not found; kg-completion needs a file of "
                          "entity id and text (TSV/CSV/JSONL), by default entities.tsv beside data.train")
    return path


def filtered_ranks(scores: torch.Tensor, gold: torch.Tensor, known: list[set[int]]) -> np.ndarray:
    """Rank of each query's gold entity among all entities, the other known true answers left out;
    tied entities count half (the mean of the best and worst rank among the ties)."""
    scores = scores.clone().float()
    rows = torch.arange(len(gold))
    gold_score = scores[rows, gold].clone()
    for i, answers in enumerate(known):
        if answers:
            scores[i, list(answers)] = float("-inf")
    scores[rows, gold] = float("-inf")  # the gold entity is not its own competitor
    higher = (scores > gold_score[:, None]).sum(1)
    ties = (scores == gold_score[:, None]).sum(1)
    return (1 + higher + ties / 2).double().numpy()


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"mrr": float(np.mean(1.0 / ranks)),
            **{f"hits@{k}": float(np.mean(ranks <= k)) for k in HITS_AT},
            "mean_rank": float(np.mean(ranks))}
