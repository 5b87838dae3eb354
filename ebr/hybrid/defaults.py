"""The served retrieval defaults, one place for the server's settings and the offline evaluation's
`hybrid` system, so the holdout report measures exactly what the server does by default."""

from __future__ import annotations

DEFAULT_RETRIEVAL = "auto"  # query selection picks the channels (see ebr.hybrid.selection)
DEFAULT_FUSION = "weighted"  # bench/results/hybrid.md: best true_recall@100 + ndcg@10 on the small day
DEFAULT_LEXICAL_WEIGHT = 2.0
