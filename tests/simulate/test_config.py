"""SimulateConfig: defaults, the scale table with overrides, YAML loading and rejection of bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ebr.settings import ConfigError, Section, load_config
from ebr.simulate import SCALES, SimulateConfig


def test_defaults_and_section():
    cfg = SimulateConfig()
    assert isinstance(cfg, Section)
    assert (cfg.days, cfg.scale, cfg.seed, cfg.lang, cfg.start_date) == (8, "small", 0, "zh", "2026-11-01")
    assert cfg.sizes() == SCALES["small"]


def test_scale_rows_grow_and_tiny_is_small():
    order = ["tiny", "small", "medium", "large"]
    docs = [SCALES[s].n_docs for s in order]
    assert docs == sorted(docs) and docs[0] < 1000 and SCALES["large"].n_docs >= 1_000_000
    assert SCALES["tiny"].requests_per_day < 1000


def test_size_override_changes_only_that_size():
    base = SimulateConfig(scale="tiny").sizes()
    over = SimulateConfig(scale="tiny", n_docs=123, requests_per_day=45).sizes()
    assert (over.n_docs, over.requests_per_day) == (123, 45)
    assert over.n_users == base.n_users and over.n_leaves == base.n_leaves


def test_days_list_is_consecutive_utc_days():
    cfg = SimulateConfig(days=3, start_date="2026-12-31")
    assert cfg.days_list() == ["2026-12-31", "2027-01-01", "2027-01-02"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("qu_error_rate", 1.5),
        ("days", 0),
        ("scale", "huge"),
        ("lang", "fr"),
        ("start_date", "2026-13-01"),
        ("start_date", "Nov 1"),
        ("seed", -1),
        ("query_attr_probs", (0.5, 0.5, 0.5)),
        ("logged_out_rate", -0.1),
        ("doc_zipf", 0.0),
        ("unknown_knob", 1),
    ],
)
def test_bad_value_is_rejected_naming_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        SimulateConfig(**{field: value})


def test_funnel_must_narrow():
    with pytest.raises(ValidationError, match="n_exposed=30, n_rank=20"):
        SimulateConfig(n_exposed=30)
    with pytest.raises(ValidationError, match="n_popular_recall"):
        SimulateConfig(n_popular_recall=500)


def test_loads_from_yaml_and_names_bad_field(tmp_path):
    good = tmp_path / "sim.yaml"
    good.write_text("scale: tiny\ndays: 2\nqu_error_rate: 0.2\nlang: en\n", encoding="utf-8")
    cfg = load_config(SimulateConfig, good, ["seed=7"])
    assert (cfg.scale, cfg.days, cfg.qu_error_rate, cfg.lang, cfg.seed) == ("tiny", 2, 0.2, "en", 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text("position_bias_eta: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="position_bias_eta"):
        load_config(SimulateConfig, bad)
