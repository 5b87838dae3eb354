"""Feature services: retrieval_training, ranking_training and query_tower_online."""

from _data_dir import DATA_DIR

from ebr.features.definitions import build_definitions

_defs = build_definitions(DATA_DIR)

retrieval_training = _defs.services["retrieval_training"]
ranking_training = _defs.services["ranking_training"]
query_tower_online = _defs.services["query_tower_online"]
