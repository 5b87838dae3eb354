"""Small model configs and realistic feature rows shared by the model, loss and export tests."""

from __future__ import annotations

from typing import Any

from ebr.models.config import FeaturizerConfig, NumericFeature, TwoTowerConfig


def small_featurizer() -> FeaturizerConfig:
    """A featurizer with small vocabularies and short sequences so tests run in seconds."""
    return FeaturizerConfig.model_validate(
        {
            "vocab": {
                "unigram": 500, "bigram": 800, "word": 800, "user_id": 100, "city": 20, "profile_tag": 50,
                "doc_id": 300, "category": 40, "author_id": 60, "brand": 30, "attribute": 50, "tag": 50,
            },
            "max_len": {
                "query_unigrams": 12, "query_bigrams": 12, "query_words": 8, "recent_queries": 4,
                "profile_tags": 4, "seq_rt": 6, "seq_st": 8, "seq_lt": 8, "title_words": 12,
                "attributes": 4, "tags": 4,
            },
            "user_numeric": [
                NumericFeature(name="user_search_count_30d", low=1, high=1000, num_boundaries=8)
            ],
        }
    )  # fmt: skip


def small_config(**overrides: Any) -> TwoTowerConfig:
    """A TwoTowerConfig with tiny dims (hidden 16, 2 heads, out 8) on `small_featurizer`."""
    base: dict[str, Any] = {
        "featurizer": small_featurizer().model_dump(),
        "query_tower": {"hidden_dim": 16, "out_dim": 8, "num_heads": 2},
        "doc_tower": {"hidden_dim": 16, "out_dim": 8, "mlp_dims": [32]},
        "seed": 7,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return TwoTowerConfig.model_validate(base)


def logged_in_row(query: str = "红色连衣裙 夏季") -> dict[str, Any]:
    """A logged-in request with a profile, recent queries and all three behaviour sequences."""
    return {
        "query": query,
        "qu_category_leaf": "连衣裙",
        "qu_brand": "某品牌",
        "user_id": 1042,
        "user_gender": "f",
        "user_age": 27,
        "user_city": "杭州",
        "user_profile_tags": ["fashion", "sports"],
        "recent_queries": ["绿色半身裙", "yellow long skirt", "运动鞋"],
        "user_search_count_30d": 37,
        "seq_rt_doc_ids": [11, 12, 13],
        "seq_rt_categories": ["连衣裙", "半身裙", "运动鞋"],
        "seq_rt_authors": [501, 502, 501],
        "seq_rt_event_types": ["click", "like", "click"],
        "seq_st_doc_ids": [21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
        "seq_st_categories": ["连衣裙"] * 10,
        "seq_st_authors": [503] * 10,
        "seq_st_event_types": ["click"] * 9 + ["favorite"],
        "seq_lt_doc_ids": [31, 32],
        "seq_lt_categories": ["T恤", "连衣裙"],
        "seq_lt_authors": [504, 505],
        "seq_lt_event_types": ["purchase", "comment"],
    }


def logged_out_row(query: str = "iPhone 15 手机壳") -> dict[str, Any]:
    """A logged-out request: the query alone (every user column absent)."""
    return {"query": query, "user_search_count_30d": None}


def doc_row(doc_id: int = 11, title: str = "夏季红色连衣裙 女 碎花", **extra: Any) -> dict[str, Any]:
    """A doc row with every column the default doc featurizer needs."""
    row: dict[str, Any] = {
        "doc_id": doc_id,
        "title": title,
        "category_l1": "服饰",
        "category_l2": "女装",
        "category_leaf": "连衣裙",
        "brand": "某品牌",
        "attributes": ["color=red", "season=summer"],
        "tags": ["新品"],
        "author_id": 501,
        "doc_clicks_30d": 120,
        "doc_ctr_30d": 0.031,
        "author_follower_count": 52000,
        "doc_age_days": 12,
    }
    row.update(extra)
    return row


def doc_rows() -> list[dict[str, Any]]:
    """A few docs: Chinese, Latin and mixed titles, one without brand/statistics."""
    return [
        doc_row(),
        doc_row(12, "Apple iPhone 15 Pro silicone case", category_l1="数码", category_l2="手机配件",
                category_leaf="手机壳", brand="Apple", attributes=["color=black"], tags=[], author_id=777),
        doc_row(13, "华为mate60pro 手机壳 防摔", category_l1="数码", category_l2="手机配件",
                category_leaf="手机壳", brand=None, attributes=None, tags=None, author_id=778,
                doc_clicks_30d=None, doc_ctr_30d=None, author_follower_count=None, doc_age_days=None),
    ]  # fmt: skip
