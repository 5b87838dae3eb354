"""The run configuration: defaults, YAML round trip (the pipeline passes it as text), overrides, errors."""

from __future__ import annotations

import pytest

from ebr.config import EbrConfig, load_ebr_config
from ebr.settings import ConfigError


def test_yaml_round_trip_gives_an_equal_config():
    cfg = load_ebr_config(None, ["two_tower.train.epochs=2", "index.target_recall=0.9", "samples.days_back=3"])
    assert EbrConfig.from_yaml_text(cfg.to_yaml()) == cfg
    assert cfg.two_tower.train.epochs == 2 and cfg.samples.days_back == 3


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("samples:\n  days_back: 4\nindex:\n  factory: Flat\n", encoding="utf-8")
    cfg = load_ebr_config(str(path), ["samples.days_back=2"])
    assert (cfg.samples.days_back, cfg.index.factory) == (2, "Flat")


@pytest.mark.parametrize(("override", "field"), [("samples.days_back=0", "samples.days_back"),
                                                 ("nosuch.x=1", "nosuch"), ("index.target_recall=abc", "target")])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_ebr_config(None, [override])
