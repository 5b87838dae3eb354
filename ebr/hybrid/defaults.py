"""The served retrieval defaults, one place for the server's settings and the offline evaluation's
`hybrid` system, so the holdout report measures exactly what the server does by default."""

from __future__ import annotations

DEFAULT_RETRIEVAL = "auto"  # query selection picks the channels (see ebr.hybrid.selection)
DEFAULT_FUSION = "weighted"
# The lexical weight of a bundle that states none (bundles state the weight their day's evaluation chose,
# ebr.evaluate.hybrid.tune_lexical_weight). 0.5 is the one fixed weight of bench/bench_hybrid.py's grid that beats
# both channels on the small day and on English marketplace logs; on Chinese marketplace logs only 2 does
# (docs/evaluation.md), hence the per-day choice.
DEFAULT_LEXICAL_WEIGHT = 0.5
