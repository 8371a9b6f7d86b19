"""Answer normalization shared by the rule judge: unicode, case, punctuation, articles, whitespace,
and number parsing (commas, units, percent)."""
from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

_ARTICLES = re.compile(r"\b(a|an|the)\b")
# ASCII punctuation becomes spaces (the fast path); `normalize_answer` also blanks Unicode P* / S* characters.
_PUNCT_TABLE = {ord(c): " " for c in string.punctuation}
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


@lru_cache(maxsize=65536)  # ground truths repeat across the n rollouts of a prompt
def normalize_answer(text: str) -> str:
    """NFKC, casefold, drop accents, punctuation and articles, collapse whitespace."""
    if text.isascii():  # fast path: no unicode work needed
        text = text.lower().translate(_PUNCT_TABLE)
    else:
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
        text = "".join(" " if unicodedata.category(c)[0] in "PS" else c
                       for c in text if not unicodedata.combining(c)).translate(_PUNCT_TABLE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def parse_numbers(text: str) -> list[float]:
    """Every number in `text`: `1,234.5 km` -> [1234.5]; `12%` -> [12.0] (units are ignored)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    return [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)]  # every match parses
