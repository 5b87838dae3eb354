"""Split normalized text into script runs (Han characters, Latin/digit words); punctuation separates runs."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

# CJK unified ideographs (incl. extension A) and compatibility ideographs.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"([{_HAN}]+)|([^\W_{_HAN}]+)")


class Run(NamedTuple):
    """A maximal stretch of one script: `han` (ideographs) or `latin` (letters/digits of other scripts)."""

    kind: Literal["han", "latin"]
    text: str


def split_runs(text: str) -> list[Run]:
    """Runs in order of appearance; whitespace and punctuation are dropped (they only separate runs)."""
    return [Run("han", m.group(1)) if m.group(1) else Run("latin", m.group(2)) for m in _RUN.finditer(text)]
