"""Feature definitions: names the model featurizer reads, the Feast repository layout, config and encoding."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ebr.features import (
    DOC_NUMERIC_FEATURES,
    QUERY_NUMERIC_FEATURES,
    SERVICES,
    USER_NUMERIC_FEATURES,
    VIEWS,
    FeaturesConfig,
    service_features,
)
from ebr.features.encoding import decode_list, decode_lists, encode_list

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_services_carry_every_column_the_featurizer_reads():
    from ebr.models.config import default_doc_numeric
    from ebr.models.inputs import DOC_COLUMNS, SEQUENCE_COLUMNS, USER_COLUMNS

    query_side = set(service_features("query_tower_online")) | {"user_id", "query"}
    assert set(USER_COLUMNS) | set(SEQUENCE_COLUMNS) <= query_side
    for training in ("retrieval_training", "ranking_training"):
        cols = set(service_features(training)) | {"doc_id"}
        assert set(DOC_COLUMNS) <= cols and query_side <= cols | {"user_id", "query"}
    assert {f.name for f in default_doc_numeric()} <= set(DOC_NUMERIC_FEATURES)


def test_numeric_constants_are_numeric_features_of_their_side():
    kinds = {f.name: f.dtype for v in VIEWS for f in v.features}
    for names in (USER_NUMERIC_FEATURES, QUERY_NUMERIC_FEATURES, DOC_NUMERIC_FEATURES):
        assert names and all(kinds[n] in ("int64", "float32") for n in names)
    assert {"doc_exposures_7d", "doc_clicks_30d", "doc_ctr_30d", "doc_age_days", "author_follower_count",
            "author_ctr_30d"} <= set(DOC_NUMERIC_FEATURES)  # fmt: skip
    assert "query_ctr_30d" in QUERY_NUMERIC_FEATURES and "user_age" in USER_NUMERIC_FEATURES
    names = [f.name for v in VIEWS for f in v.features]
    assert len(names) == len(set(names)), "feature names are unique across views"


def test_feature_repo_declares_the_same_objects(tmp_path, monkeypatch):
    from feast.repo_config import load_repo_config
    from feast.repo_operations import parse_repo

    monkeypatch.setenv("EBR_FEATURE_DATA", str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO))
    modules = ("_data_dir", "entities", "data_sources", "feature_views", "feature_services")
    for name in modules:
        sys.modules.pop(name, None)
    try:
        contents = parse_repo(REPO)
    finally:
        for name in modules:
            sys.modules.pop(name, None)
    assert {e.name for e in contents.entities} >= {"user", "query", "doc", "author"}
    assert sorted(v.name for v in contents.feature_views) == sorted(v.name for v in VIEWS)
    assert sorted(s.name for s in contents.feature_services) == sorted(SERVICES)
    files = [s for s in contents.data_sources if s.name.endswith("_source")]
    assert all(s.path.startswith(str(tmp_path)) for s in files) and len(files) == len(VIEWS)
    pushes = sorted(s.name for s in contents.data_sources if s not in files)
    assert pushes == ["user_queries_push", "user_realtime_push"]
    cfg = load_repo_config(REPO, REPO / "feature_store.yaml")
    assert cfg.online_store.type == "sqlite" and cfg.offline_store.type == "file"
    assert "data/features" in str(cfg.registry.path) and "data/features" in cfg.online_store.path
    prod = yaml.safe_load((REPO / "feature_store.production.yaml").read_text())
    assert prod["online_store"]["type"] == "redis" and prod["offline_store"]["type"] == "file"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"short_term_days": 30}, "short_term_days"), ({"sequence_event_types": ["view"]}, "sequence_event_types"),
     ({"realtime_max_len": 0}, "realtime_max_len"), ({"on_missing": "ignore"}, "on_missing"), ({"nope": 1}, "nope")],
)  # fmt: skip
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        FeaturesConfig(**kwargs)


def test_list_encoding_round_trips():
    values = [[1, 2, 3], ["红色", "a,b", 'q"uote'], []]
    assert [decode_list(encode_list(v)) for v in values] == values
    import pandas as pd

    s = decode_lists(pd.Series([encode_list([1]), None, encode_list([1])]))
    assert s.tolist() == [[1], [], [1]]
    with pytest.raises(ValueError, match="JSON list"):
        decode_list('{"a": 1}')
