"""API keys: loaded from a file or the environment, kept only as SHA-256 digests, checked in constant time.

A key file holds one key a line (blank lines and `#` comments ignored). A line `sha256:<hex>` is a
key's digest instead of the key itself, so the file on disk need not hold usable secrets
(`printf %s "$KEY" | sha256sum` makes one).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from pathlib import Path

from paretune.errors import ParetuneError

log = logging.getLogger("paretune.serve")

ENV_VAR = "PARETUNE_API_KEYS"
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_SHORT_KEY = 16  # characters; shorter keys can be guessed


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_api_keys(key_file: Path | None = None, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Digests of every key in `key_file` and the PARETUNE_API_KEYS variable (comma-separated)."""
    environ = os.environ if environ is None else environ
    entries: list[tuple[str, str]] = []  # (where, key or digest line)
    if key_file is not None:
        if not key_file.is_file():
            raise ParetuneError(f"--api-key-file {key_file}: file not found")
        for number, line in enumerate(key_file.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append((f"{key_file} line {number}", line))
        if not entries:
            raise ParetuneError(f"--api-key-file {key_file} holds no keys (one key a line)")
    entries += [(ENV_VAR, key.strip()) for key in environ.get(ENV_VAR, "").split(",") if key.strip()]
    digests = []
    for where, entry in entries:
        found = _DIGEST.fullmatch(entry)
        if found:
            digests.append(found.group(1).lower())
            continue
        if len(entry) < _SHORT_KEY:
            log.warning("API key from %s is shorter than %d characters and easy to guess", where, _SHORT_KEY)
        digests.append(hash_key(entry))
    return tuple(dict.fromkeys(digests))


class KeyChecker:
    """Answers which key (by a short, loggable id) an Authorization header carries, or None."""

    def __init__(self, digests: tuple[str, ...]):
        self._digests = [bytes.fromhex(d) for d in digests]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        offered = hashlib.sha256(token.encode("utf-8")).digest()
        # Compare with every key, without stopping at a match: the time taken says nothing about
        # which key (if any) was close. Digests are fixed-length, so compare_digest is constant-time.
        match = None
        for digest in self._digests:
            if hmac.compare_digest(offered, digest):
                match = digest
        return None if match is None else "key-" + match.hex()[:12]
