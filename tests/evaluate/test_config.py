"""Config sections of the evaluation step and the gate: defaults and errors that name the field."""

from __future__ import annotations

import pytest

from ebr.evaluate import EvaluateConfig, GateConfig
from ebr.settings import ConfigError, load_config


def test_defaults_and_normalized_ks() -> None:
    cfg = EvaluateConfig(ks=[100, 10, 100])
    assert cfg.ks == [10, 100] and cfg.main_k == 100
    assert GateConfig().keys == ["click_recall@100", "true_recall@100", "p_good@100", "filtered_share@100"]


def test_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="main_k=100 is not one of ks"):
        load_config(EvaluateConfig, overrides=["ks=[10, 50]"])
    with pytest.raises(ConfigError, match="keys.*name@K"):
        load_config(GateConfig, overrides=["keys=[recall100]"])
    with pytest.raises(ConfigError, match="tolerance"):
        load_config(GateConfig, overrides=["tolerance=-1"])
