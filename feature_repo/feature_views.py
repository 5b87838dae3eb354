"""Feature views; their schemas, TTLs and cadences are defined in ebr/features/definitions.py."""

from _data_dir import DATA_DIR

from ebr.features.definitions import build_definitions

_defs = build_definitions(DATA_DIR)

user_profile = _defs.views["user_profile"]
user_stats = _defs.views["user_stats"]
user_sequences = _defs.views["user_sequences"]
user_realtime = _defs.views["user_realtime"]
user_queries = _defs.views["user_queries"]
query_stats = _defs.views["query_stats"]
doc_profile = _defs.views["doc_profile"]
doc_stats = _defs.views["doc_stats"]
author_profile = _defs.views["author_profile"]
author_stats = _defs.views["author_stats"]
