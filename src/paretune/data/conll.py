"""CoNLL files: one `word ... tag` line per token, a blank line between sentences.

A sentence is one example, numbered as its row; each problem names the line of the token it is
about, since a sentence can run over many lines.
"""
from __future__ import annotations

from paretune.data.examples import Example
from paretune.data.tags import tag_problem
from paretune.errors import DataProblem


def read_conll(
    name: str, text: str, require_labels: bool, tag_scheme: str = "auto"
) -> tuple[list[Example], list[DataProblem]]:
    """Sentences of a CoNLL text as Examples, with every problem found in them."""
    examples: list[Example] = []
    problems: list[DataProblem] = []
    for row, tokens in enumerate(_conll_sentences(text), 1):
        untagged = [line for line, fields in tokens if len(fields) == 1]
        # Untagged tokens are fine only for prediction input where no token has a tag.
        if untagged and (require_labels or len(untagged) < len(tokens)):
            message = "token line has no tag column (expected 'word ... tag')"
            problems.extend(DataProblem(name, message, row=row, field="tag", line=line) for line in untagged)
            continue
        bad_tags = [] if untagged else [
            DataProblem(name, problem, row=row, field="tag", line=line)
            for line, fields in tokens
            if (problem := tag_problem(fields[-1], tag_scheme))
        ]
        if bad_tags:
            problems.extend(bad_tags)
            continue
        words = [fields[0] for _, fields in tokens]
        tags = None if untagged else [fields[-1] for _, fields in tokens]
        examples.append(Example(words, tags, row, tokens[0][0]))
    return examples, problems


def _conll_sentences(text: str) -> list[list[tuple[int, list[str]]]]:
    """Sentences as lists of (file line, whitespace-separated fields)."""
    sentences: list[list[tuple[int, list[str]]]] = []
    sentence: list[tuple[int, list[str]]] = []
    for line, content in enumerate(text.split("\n"), 1):
        fields = content.split()
        if fields and fields[0] != "-DOCSTART-":
            sentence.append((line, fields))
        elif sentence:  # a blank or -DOCSTART- line ends the sentence
            sentences.append(sentence)
            sentence = []
    if sentence:
        sentences.append(sentence)
    return sentences
