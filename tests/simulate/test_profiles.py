"""Kinds of logs: the `marketplace` profile changes the click model and the catalogue (3x impressions per
request, stronger position bias, more docs without a brand) while the contract stays the same, and a knob set
explicitly wins over its profile value."""

from __future__ import annotations

import pandas as pd
import pytest

from ebr.contract import check_dataset
from ebr.simulate import SimulateConfig, simulate
from ebr.simulate.config import PROFILES


def _ctr_by_position(root) -> pd.Series:
    imps = pd.read_parquet(root / "impressions")
    exposed = imps[imps["stage"] == "exposed"]
    return exposed.groupby("position")["clicked"].mean()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for profile in ("default", "marketplace"):
        root = tmp_path_factory.mktemp(profile) / "data"
        simulate(root, SimulateConfig(scale="tiny", days=2, seed=11, profile=profile), progress=False)
        out[profile] = root
    return out


def test_marketplace_logs_differ_in_exposure_bias_and_catalogue(runs):
    exposed = {p: pd.read_parquet(r / "impressions").query("stage == 'exposed'").groupby("request_id").size().max()
               for p, r in runs.items()}
    assert exposed == {"default": 10, "marketplace": 30}
    ctr = {p: _ctr_by_position(r) for p, r in runs.items()}
    decay = {p: c.loc[1] / c.loc[6:10].mean() for p, c in ctr.items()}
    assert decay["marketplace"] > decay["default"], f"position 1 vs 6-10 click ratio: {decay}"
    no_brand = {p: pd.read_parquet(r / "docs")["brand"].isna().mean() for p, r in runs.items()}
    assert no_brand["marketplace"] > no_brand["default"] + 0.1
    for root in runs.values():
        assert check_dataset(root).ok, "both kinds of logs satisfy the raw-log contract"


def test_an_explicit_knob_wins_over_the_profile_and_a_bad_profile_is_named():
    assert SimulateConfig(profile="marketplace").n_exposed == PROFILES["marketplace"]["n_exposed"]
    assert SimulateConfig(profile="marketplace", n_exposed=12).n_exposed == 12
    assert SimulateConfig().n_exposed == 10
    with pytest.raises(ValueError, match="profile"):
        SimulateConfig(profile="bazaar")
