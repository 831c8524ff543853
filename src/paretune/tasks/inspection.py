"""Showing which tokens of an encoded example are trained: what `paretune inspect` prints."""
from __future__ import annotations

OPEN, CLOSE = "«", "»"


def marked_text(tokenizer, ids: list[int], trained: list[bool]) -> str:
    """The example's text, token by token, with each run of trained tokens between « and »;
    special tokens are shown as they are (they are often what matters: the end of a turn)."""
    pieces, inside = [], False
    for token_id, is_trained in zip(ids, trained):
        if is_trained != inside:
            pieces.append(OPEN if is_trained else CLOSE)
            inside = is_trained
        pieces.append(tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False))
    if inside:
        pieces.append(CLOSE)
    return "".join(pieces)
