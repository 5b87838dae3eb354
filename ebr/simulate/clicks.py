"""The user model: position-biased clicks driven by relevance, preference and quality; deeper engagement.

P(click) = P(examine position p) * P(attracted), with P(examine) = p ** -eta (position bias) and
P(attracted) = sigmoid(bias + rel * grade + pref * preference + quality * (q - 0.5) + noise). Likes,
favorites, comments and purchases happen only after a click, more often on good docs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.simulate.config import SimulateConfig


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Engagement:
    """Per-row outcomes; all False (dwell 0) where there was no click."""

    clicked: np.ndarray
    liked: np.ndarray
    favorited: np.ndarray
    commented: np.ndarray
    purchased: np.ndarray
    dwell_ms: np.ndarray  # int32, 0 where not clicked


def engage(
    cfg: SimulateConfig, rng: np.random.Generator, clicked: np.ndarray, grade: np.ndarray, quality: np.ndarray
) -> Engagement:
    """Likes, favorites, comments, purchases and dwell time following the given clicks."""
    n = len(clicked)
    base = cfg.engage_quality_coef * (quality - 0.5) + cfg.engage_rel_coef * grade

    def after(bias: float) -> np.ndarray:
        return clicked & (rng.random(n) < sigmoid(bias + base))

    liked, fav, com, buy = (after(b) for b in (cfg.like_bias, cfg.favorite_bias, cfg.comment_bias, cfg.purchase_bias))
    mu = np.log(cfg.dwell_median_ms) + 0.4 * grade + 0.8 * (quality - 0.5)
    dwell = np.exp(mu + cfg.dwell_sigma * rng.normal(size=n)).clip(300, 1_800_000).astype(np.int32)
    return Engagement(clicked, liked, fav, com, buy, np.where(clicked, dwell, 0).astype(np.int32))


def search_clicks(
    cfg: SimulateConfig, rng: np.random.Generator, position: np.ndarray, grade: np.ndarray, pref: np.ndarray,
    quality: np.ndarray,
) -> Engagement:
    """Clicks on exposed rows (position >= 1) and the engagement after them; other rows never click."""
    exposed = position >= 1
    examine = np.where(exposed, np.maximum(position, 1).astype(np.float64) ** -cfg.position_bias_eta, 0.0)
    logit = (
        cfg.click_bias + cfg.click_rel_coef * grade + cfg.click_pref_coef * pref
        + cfg.click_quality_coef * (quality - 0.5) + rng.normal(0.0, cfg.click_noise, len(position))
    )
    clicked = exposed & (rng.random(len(position)) < examine * sigmoid(logit))
    return engage(cfg, rng, clicked, grade, quality)
