"""`data.knowledge`: knowledge-graph triples verbalised into training rows (knowledge-enhanced fine-tuning).

A triples file (head, relation, tail; data/triples.py reads it) and its entity file (id, text)
become training text, one row per triple, added to the run's training rows (or, `mode: replace`,
instead of them) after the validation rows were held out, so validation never sees them:

- `text` rows: a statement per triple ("Poodle is a kind of dog."), continued pretraining for an
  encoder (`task: mlm`) or causal-LM text for a generative run (every token trained);
- `instruction` rows: a question and its answer per triple ("What is poodle a kind of?" ->
  "dog"), for a generative (chat) run;
- `both`: the two rows of each triple. `auto` (the default): instruction rows when the task
  generates, statements when it reads unlabelled text.

Each relation has a statement template (`{head}`, `{tail}`) and a question template (`{head}`; the
answer is the tail); WordNet's 11 relations (WN18RR's, examples/make_wordnet_kg.py) have defaults,
`templates` / `questions` add or override them. An entity's name is the first lemma of its text
(WordNet's "dog, domestic dog: a member of the genus Canis" -> "dog": the text up to ':' and then
up to ','), or the whole text with `names: text`; an id with no entity file is its own name.

Every problem is named by file, row and field, all at once: a malformed or repeated triple, a
relation with no template for the rows asked for, an entity missing from the entity file.
"""
from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paretune.data.examples import Example
from paretune.data.triples import read_entities, read_triples
from paretune.errors import ConfigError, DataError, DataProblem

# relation -> (statement, question). A question's answer is the tail.
WORDNET_TEMPLATES: dict[str, tuple[str, str]] = {
    "_hypernym": ("{head} is a kind of {tail}.", "What is {head} a kind of?"),
    "_instance_hypernym": ("{head} is an instance of {tail}.", "What is {head} an instance of?"),
    "_derivationally_related_form": ("{head} and {tail} are derivationally related forms.",
                                     "What word is derivationally related to {head}?"),
    "_also_see": ("{head} is related to {tail}.", "What is {head} related to?"),
    "_member_meronym": ("{tail} is a member of {head}.", "What is a member of {head}?"),
    "_has_part": ("{head} has {tail} as a part.", "What is a part of {head}?"),
    "_synset_domain_topic_of": ("{head} belongs to the topic of {tail}.", "What topic does {head} belong to?"),
    "_member_of_domain_usage": ("{tail} is a term of {head} usage.", "What term is of {head} usage?"),
    "_member_of_domain_region": ("{tail} is a term used in the region {head}.",
                                 "What term is used in the region {head}?"),
    "_verb_group": ("{head} is similar in meaning to the verb {tail}.",
                    "What verb is similar in meaning to {head}?"),
    "_similar_to": ("{head} is similar in meaning to {tail}.", "What is similar in meaning to {head}?"),
}
ENTITY_FILE = "entities.tsv"  # looked for beside the triples file when `entities` is not set


def _placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:  # an unmatched brace
        raise ValueError(f"{template!r}: {err}") from None


class KnowledgeConfig(BaseModel):
    """`data.knowledge`: a triples file, or this section. Paths: the triples file's is taken from the
    config's folder; a relative entity file from the triples file's folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    triples: str = Field(description="Triples file (head, relation, tail): TSV, CSV or JSON lines.")
    entities: str | None = Field(None, description="Entity file (id, text) whose text names each entity; "
                                 "default: entities.tsv beside the triples file when there is one, else ids.")
    form: Literal["auto", "text", "instruction", "both"] = Field(
        "auto", description="text: a statement a triple; instruction: a question and its answer; both; "
        "auto: instruction rows when the task generates, else statements.")
    mode: Literal["add", "replace"] = Field("add", description="add to the training rows, or replace them "
                                            "(validation rows are held out before either).")
    names: Literal["first-lemma", "text"] = Field("first-lemma", description="An entity's name: its text up "
                                                  "to ':' and ',' (WordNet's first lemma), or the whole text.")
    templates: dict[str, str] = Field(default_factory=dict, description="relation -> statement with {head} "
                                      "and {tail}; adds to or overrides WordNet's defaults.")
    questions: dict[str, str] = Field(default_factory=dict, description="relation -> question with {head} "
                                      "(the answer is the tail); adds to or overrides WordNet's defaults.")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"triples": value} if isinstance(value, str) else value  # `data.knowledge: triples.tsv`

    @field_validator("templates")
    @classmethod
    def _statements(cls, templates: dict[str, str]) -> dict[str, str]:
        for relation, template in templates.items():
            if _placeholders(template) != {"head", "tail"}:
                raise ValueError(f"{relation}: {template!r} must use exactly {{head}} and {{tail}}")
        return templates

    @field_validator("questions")
    @classmethod
    def _questions(cls, questions: dict[str, str]) -> dict[str, str]:
        for relation, template in questions.items():
            if _placeholders(template) != {"head"}:
                raise ValueError(f"{relation}: {template!r} must use {{head}} only (the answer is the tail)")
        return questions

    def statement(self, relation: str) -> str | None:
        return self.templates.get(relation) or WORDNET_TEMPLATES.get(relation, (None, None))[0]

    def question(self, relation: str) -> str | None:
        return self.questions.get(relation) or WORDNET_TEMPLATES.get(relation, (None, None))[1]


@dataclass(frozen=True)
class Fact:
    """One triple with its entities' names, and where it was read."""

    head: str
    relation: str
    tail: str
    row: int
    line: int | None


def entity_name(text: str, names: str = "first-lemma") -> str:
    if names == "text":
        return text.strip()
    return text.split(":", 1)[0].split(",", 1)[0].strip() or text.strip()


def _entity_file(options: KnowledgeConfig) -> Path | None:
    triples_dir = Path(options.triples).parent
    if options.entities:
        path = Path(options.entities).expanduser()
        path = path if path.is_absolute() else triples_dir / path
        if not path.is_file():
            raise DataError(DataProblem(str(path), "data.knowledge.entities: no such file"))
        return path
    beside = triples_dir / ENTITY_FILE
    return beside if beside.is_file() else None


def read_facts(options: KnowledgeConfig, forms: tuple[str, ...]) -> list[Fact]:
    """Every triple with named entities, or one DataError naming every bad row and field.

    `forms` ("text", "instruction") says which templates each relation needs."""
    path = options.triples
    if not Path(path).is_file():
        raise DataError(DataProblem(path, "data.knowledge: no such triples file"))
    triples = read_triples(path)  # malformed lines, repeats, self-loops: named by row and line
    entity_path = _entity_file(options)
    texts = read_entities(entity_path) if entity_path else None
    facts, problems = [], []
    for example in triples:
        head, relation, tail = example.label
        missing = [kind for kind, template in (("text", options.statement(relation)),
                                               ("instruction", options.question(relation)))
                   if kind in forms and template is None]
        if missing:
            key = " and ".join({"text": "templates", "instruction": "questions"}[kind] for kind in missing)
            problems.append(DataProblem(path, f"relation {relation!r} has no template: add it to "
                                        f"data.knowledge.{key}", row=example.row, field="relation", line=example.line))
        for field, entity in (("head", head), ("tail", tail)):
            if texts is not None and entity not in texts:
                problems.append(DataProblem(path, f"entity {entity!r} is not in the entity file {entity_path}",
                                            row=example.row, field=field, line=example.line))
        if texts is None or (head in texts and tail in texts):
            name = (lambda e: entity_name(texts[e], options.names)) if texts else (lambda e: e)
            facts.append(Fact(name(head), relation, name(tail), example.row, example.line))
    if problems:
        raise DataError(problems)
    return facts


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def statement_row(options: KnowledgeConfig, fact: Fact) -> Example:
    text = options.statement(fact.relation).format(head=fact.head, tail=fact.tail)
    return Example(_sentence(text), None, fact.row, fact.line)


def instruction_row(options: KnowledgeConfig, fact: Fact) -> Example:
    question = _sentence(options.question(fact.relation).format(head=fact.head))
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": fact.tail}]
    return Example(messages, fact.tail, fact.row, fact.line)


def knowledge_forms(options: KnowledgeConfig, task_cls) -> tuple[str, ...]:
    """The row forms this run gets, or a ConfigError when the task cannot train on them."""
    form = options.form
    if form == "auto":
        form = "instruction" if task_cls.generates else "text"
    forms = ("text", "instruction") if form == "both" else (form,)
    if "instruction" in forms and not task_cls.generates:
        raise ConfigError(f"data.knowledge.form: instruction rows train a generative task; {task_cls.name} "
                          "does not generate (form: text gives statements for task: mlm)")
    if "text" in forms and task_cls.needs_labels and not task_cls.generates:
        raise ConfigError(f"data.knowledge: the {task_cls.name} task trains on labelled rows; knowledge rows "
                          "are text (task: mlm) or instructions (task: generation)")
    return forms


def knowledge_rows(options: KnowledgeConfig, task_cls) -> tuple[list[Example], dict[str, Any]]:
    """The knowledge rows of a run, and what data.json reports about them."""
    forms = knowledge_forms(options, task_cls)
    facts = read_facts(options, forms)
    rows = []
    for fact in facts:
        if "text" in forms:
            rows.append(statement_row(options, fact))
        if "instruction" in forms:
            rows.append(instruction_row(options, fact))
    relations = Counter(fact.relation for fact in facts)
    report = {"file": options.triples, "triples": len(facts), "rows_added": len(rows), "form": "+".join(forms),
              "mode": options.mode, "relations": dict(sorted(relations.items()))}
    return rows, report


def with_knowledge(options: KnowledgeConfig | None, train: list[Example],
                   task_cls) -> tuple[list[Example], dict | None]:
    """The training rows with the knowledge rows added (or in their place), and data.json's report."""
    if options is None:
        return train, None
    if any(ex.label is not None and not isinstance(ex.label, str) for ex in train[:1]):
        raise ConfigError(f"data.knowledge: the {task_cls.name} task's rows are not text or question/answer "
                          "rows, which is what knowledge rows are")
    rows, report = knowledge_rows(options, task_cls)
    if options.mode == "replace":
        report["train_rows_replaced"] = len(train)
        return rows, report
    return train + rows, report
