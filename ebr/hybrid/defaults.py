"""The served retrieval defaults, one place for the server's settings and the offline evaluation's
`hybrid` system, so the holdout report measures exactly what the server does by default."""

from __future__ import annotations

DEFAULT_RETRIEVAL = "auto"  # query selection picks the channels (see ebr.hybrid.selection)
DEFAULT_FUSION = "weighted"
# The one merge of bench/bench_hybrid.py's grid that beats both channels (true_recall@100 >= the embedding
# channel's and ndcg@10 >= BM25's) on both kinds of logs measured: the simulator's small day
# (bench/results/hybrid.md) and English marketplace logs (bench/results/hybrid_marketplace_en.md). Weight 2 is
# best on the small day's head but loses coverage where BM25 is weak (marketplace: true_recall@100 0.497 vs the
# embedding channel's 0.549); 1 misses it there by 0.004.
DEFAULT_LEXICAL_WEIGHT = 0.5
