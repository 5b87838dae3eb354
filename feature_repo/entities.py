"""Entities: user (user_id), query (query), doc (doc_id), author (author_id)."""

from _data_dir import DATA_DIR

from ebr.features.definitions import build_definitions

_defs = build_definitions(DATA_DIR)

user = _defs.entities["user"]
query = _defs.entities["query"]
doc = _defs.entities["doc"]
author = _defs.entities["author"]
