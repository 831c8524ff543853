"""Mask personal data (emails, phone numbers, card/account/ID numbers) in text before it is logged.

Regular expressions, not an NER model (Presidio and the like pull in spaCy and a language model):
the goal is that logs never hold a contact detail or an account number, so the patterns lean
towards masking too much. Each match becomes a tag such as [EMAIL], so logs stay readable.
"""
from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")

# Order matters: the more specific kinds go first so an IBAN is not reported as a phone number.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")),
    ("CARD", re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")),
    ("ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),  # US social security number
    # Phone numbers: optional +country code, digit groups split by spaces, dots, dashes, brackets.
    ("PHONE", re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{5,}\d(?![\w-])")),
    # Anything else that looks like an identifier: a word of 6+ characters with 5+ digits.
    ("ID", re.compile(r"\b(?=(?:[A-Za-z-]*\d){5})[A-Za-z0-9-]{6,}\b")),
]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def mask_pii(text: str) -> str:
    for tag, pattern in _PATTERNS:
        text = pattern.sub(lambda m, tag=tag: _replacement(m, tag), text)
    return text


def _replacement(match: re.Match[str], tag: str) -> str:
    found = match.group()
    if _ISO_DATE.fullmatch(found.strip()):
        return found  # a date is not personal on its own
    if tag == "PHONE" and not 7 <= len(_DIGITS.findall(found)) <= 15:
        return found  # too short or too long for a phone number
    return f"[{tag}]"


def preview(texts: list[str], mask: bool, max_chars: int = 200) -> list[str]:
    """Texts as they may appear in a log line: masked (unless asked not to) and cut short."""
    shown = []
    for text in texts:
        text = mask_pii(text) if mask else text
        shown.append(text if len(text) <= max_chars else text[:max_chars] + "...")
    return shown
