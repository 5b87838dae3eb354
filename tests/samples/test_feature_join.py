"""Feature join through the real Feast store of `ebr.features` (slow: builds a store)."""

from __future__ import annotations

import pandas as pd
import pytest

from ebr.samples import SamplesConfig, build_samples, join_features

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def with_features(tiny_data, tiny_days, tmp_path_factory):
    from ebr.features import FeaturesConfig, build_features

    day = tiny_days[4]
    feat = tmp_path_factory.mktemp("features") / "store"
    build_features(tiny_data, tiny_days[3], feat, FeaturesConfig(materialize=False))
    out = tmp_path_factory.mktemp("samples_features") / "out"
    cfg = SamplesConfig(days_back=1, ranking={"include_preranked": False, "include_ranked": False},
                        join_features=("retrieval", "ranking"))
    manifest = build_samples(tiny_data, day, out, cfg, features_dir=feat)
    return out, manifest, feat


@pytest.mark.parametrize(("name", "service"), [("retrieval", "retrieval_training"), ("ranking", "ranking_training")])
def test_joined_tables_keep_rows_and_add_service_features(with_features, name, service):
    from ebr.features import service_features

    out, manifest, _ = with_features
    plain = pd.read_parquet(out / f"{name}.parquet")
    joined = pd.read_parquet(out / f"{name}_features.parquet")
    assert manifest["tables"][f"{name}_features"]["rows"] == len(joined) == len(plain) > 0
    pd.testing.assert_frame_equal(joined[list(plain.columns)], plain)
    assert set(service_features(service)) <= set(joined.columns)
    assert joined["doc_exposures_7d"].notna().mean() > 0.9


def test_join_errors_name_the_problem(with_features):
    out, _, feat = with_features
    plain = pd.read_parquet(out / "retrieval.parquet")
    with pytest.raises(ValueError, match="service_name must be one of"):
        join_features(plain, feat, "nope")
    with pytest.raises(ValueError, match=r"lacks entity column\(s\) \['author_id'\]"):
        join_features(plain.drop(columns=["author_id"]), feat, "retrieval_training")
