"""Unicode normalization applied before any tokenization, so full-width and case variants share ids."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC-fold (full-width -> half-width), lowercase and collapse whitespace; None is an error."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
