"""Rankers of the pre-rank stage (seed 002): the fine ranker (teacher, one tower with feature crossing and
MMoE heads) and the coarse ranker (student: two towers, or three with a cross tower), plus the query-doc and
user-doc cross features both use.

Import submodules directly: `config`, `cross_features`, `rows` (features from the feature store) and
`evaluation` are torch-free; `tensors`, `fine_ranker`, `coarse_ranker` and `cost` import torch.
"""
