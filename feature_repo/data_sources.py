"""File sources of the feature views: `<data dir>/tables/<view>/ds=YYYY-MM-DD/*.parquet`; push sources of the
real-time views (`feature_store.push`, the query-tower server's /events) over theirs."""

from _data_dir import DATA_DIR

from ebr.features.definitions import build_definitions

_defs = build_definitions(DATA_DIR)

user_profile_source = _defs.sources["user_profile"]
user_stats_source = _defs.sources["user_stats"]
user_sequences_source = _defs.sources["user_sequences"]
user_realtime_source = _defs.sources["user_realtime"]
user_queries_source = _defs.sources["user_queries"]
query_stats_source = _defs.sources["query_stats"]
doc_profile_source = _defs.sources["doc_profile"]
doc_stats_source = _defs.sources["doc_stats"]
author_profile_source = _defs.sources["author_profile"]
author_stats_source = _defs.sources["author_stats"]
user_realtime_push = _defs.push_sources["user_realtime"]
user_queries_push = _defs.push_sources["user_queries"]
