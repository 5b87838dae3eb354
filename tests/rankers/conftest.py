"""Fixtures: tiny ranker configs, and ranking rows of the session's tiny dataset (features from its Feast store)."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.models.config import (
    DocTowerConfig,
    FeaturizerConfig,
    MaxLengths,
    MultiObjectiveConfig,
    QueryTowerConfig,
    VocabSizes,
)
from ebr.models.rankers.config import CoarseRankerConfig, FineRankerConfig

TINY_FEATURIZER = FeaturizerConfig(
    vocab=VocabSizes(unigram=500, bigram=1000, word=1000, user_id=500, city=50, profile_tag=100, doc_id=1500,
                     category=100, author_id=100, brand=100, attribute=200, tag=200),
    max_len=MaxLengths(query_unigrams=16, query_bigrams=16, query_words=8, recent_queries=4, profile_tags=8,
                       seq_rt=8, seq_st=16, seq_lt=16, title_words=16, attributes=8, tags=8),
)


def fine_config(**overrides: object) -> FineRankerConfig:
    """A teacher small enough for unit tests."""
    base = dict(featurizer=TINY_FEATURIZER, embed_dim=4, dcn_layers=2, dcn_low_rank=8, deep_dims=[32],
                multi_task=MultiObjectiveConfig(enabled=True, num_experts=2, expert_dims=[16], tower_dims=[8]))
    return FineRankerConfig(**{**base, **overrides})


def coarse_config(**overrides: object) -> CoarseRankerConfig:
    """A student small enough for unit tests."""
    base = dict(featurizer=TINY_FEATURIZER, cross_dims=[8], post_dims=[8], cross_embed_dim=4,
                query_tower=QueryTowerConfig(hidden_dim=8, out_dim=8, num_heads=2, lstm_layers=1, dcn_layers=1),
                doc_tower=DocTowerConfig(hidden_dim=8, out_dim=8, mlp_dims=[16]))
    return CoarseRankerConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def samples_dir(tiny_data, tiny_days, tmp_path_factory):
    """Samples of the tiny dataset's last day (training window: the days before it)."""
    from ebr.samples import SamplesConfig, build_samples

    out = tmp_path_factory.mktemp("rank_samples") / "samples"
    build_samples(tiny_data, tiny_days[-1], out, SamplesConfig(seed=5))
    return out


@pytest.fixture(scope="session")
def features_dir(tiny_data, tiny_days, tmp_path_factory):
    """The feature store of the tiny dataset, built (every day) for its last day."""
    from ebr.features import FeaturesConfig, build_features

    out = tmp_path_factory.mktemp("rank_features") / "features"
    build_features(tiny_data, tiny_days[-1], out, FeaturesConfig(materialize=False))
    return out


@pytest.fixture(scope="session")
def rows(samples_dir, features_dir):
    """Ranking rows of the samples, features joined from the feature store (the samples joined none)."""
    from ebr.models.rankers.rows import load_training_rows

    return load_training_rows(samples_dir, features_dir)


@pytest.fixture(scope="session")
def small_rows(rows):
    """The first 48 requests of `rows` (fast model and training tests)."""
    return rows.select_requests(np.arange(48))


@pytest.fixture(scope="session")
def small_cross(small_rows):
    """Every cross feature of `small_rows`, [pairs, features]."""
    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
    from ebr.models.rankers.tensors import rows_cross_features

    return rows_cross_features(small_rows, CROSS_FEATURE_NAMES)


@pytest.fixture(scope="session")
def small_tensors(small_rows, small_cross):
    """`small_rows` featurized with the tiny featurizer and every cross feature."""
    from ebr.models.rankers.cross_features import CROSS_FEATURE_NAMES
    from ebr.models.rankers.tensors import build_tensors

    return build_tensors(small_rows, TINY_FEATURIZER, small_cross, CROSS_FEATURE_NAMES)


@pytest.fixture(scope="session")
def retrieval_model_dir(tmp_path_factory):
    """A tiny untrained two-tower retrieval model saved as `train_two_tower` saves one (checkpoint + config)."""
    from ebr.models.config import TwoTowerConfig
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.checkpoint import save_two_tower

    cfg = TwoTowerConfig(featurizer=TINY_FEATURIZER, seed=4,
                         query_tower=QueryTowerConfig(hidden_dim=8, out_dim=8, num_heads=2, lstm_layers=1,
                                                      dcn_layers=1),
                         doc_tower=DocTowerConfig(hidden_dim=8, out_dim=8, mlp_dims=[16]))
    out = tmp_path_factory.mktemp("retrieval") / "model"
    out.mkdir()
    save_two_tower(TwoTowerModel(cfg).eval(), out)
    return out
