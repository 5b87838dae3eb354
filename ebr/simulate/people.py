"""Users (searchers, with latent category preferences) and authors (sellers, creators, of varying quality).

A user's latent preference over l1 categories is drawn around a profile of their demographic group, so
gender and age correlate with interests; their `profile_tags` are noisy readings of the same preference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.simulate.config import SimulateConfig
from ebr.simulate.streams import stream
from ebr.simulate.taxonomy import Taxonomy

GENDER_CODES = np.array(["m", "f", "u"])
AGE_EDGES = np.array([25, 35, 50])  # age buckets: <25, 25-34, 35-49, 50+
N_CITIES = 30


def _grow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([a, b]) if len(a) else b


@dataclass
class Users:
    """Every user ever registered, in id order (user_id = index + 1)."""

    gender: np.ndarray  # int8 index into GENDER_CODES
    age: np.ndarray  # int32, -1 = unknown
    city: np.ndarray  # int16 index into the city list, -1 = unknown
    theta: np.ndarray  # float32 (n, n_l1): latent preference over l1 categories, rows sum to 1
    activity: np.ndarray  # float64 relative search/feed activity
    register_ts: np.ndarray  # int64 µs
    tags: np.ndarray  # int32 (n, 3): profile tag term ids, -1 padded

    @property
    def n(self) -> int:
        return len(self.gender)

    @property
    def user_id(self) -> np.ndarray:
        return np.arange(1, self.n + 1, dtype=np.int64)

    def extend(self, other: Users) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, _grow(getattr(self, name), getattr(other, name)))

    def preference(self) -> np.ndarray:
        """log(theta * n_l1) clipped: 0 = indifferent, > 0 = likes the l1 category, < 0 = avoids it."""
        n_l1 = self.theta.shape[1]
        return np.clip(np.log(self.theta * n_l1 + 1e-3), -3.0, 2.0).astype(np.float32)


@dataclass
class Authors:
    """Every author (author_id = index + 1)."""

    gender: np.ndarray
    age: np.ndarray
    city: np.ndarray
    quality: np.ndarray  # float64 in (0, 1): drives the quality of their docs
    home_l1: np.ndarray  # the l1 category they mostly publish in
    productivity: np.ndarray  # relative share of docs they publish
    follower_count: np.ndarray  # int64

    @property
    def n(self) -> int:
        return len(self.gender)

    @property
    def author_id(self) -> np.ndarray:
        return np.arange(1, self.n + 1, dtype=np.int64)


def _demographics(rng: np.random.Generator, n: int, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    gender = rng.choice(3, size=n, p=[0.46, 0.46, 0.08]).astype(np.int8)
    age = np.clip(rng.normal(33, 11, n), lo, hi).astype(np.int32)
    age[rng.random(n) < 0.1] = -1
    cw = 1.0 / np.arange(1, N_CITIES + 1) ** 0.8
    city = rng.choice(N_CITIES, size=n, p=cw / cw.sum()).astype(np.int16)
    city[rng.random(n) < 0.05] = -1
    return gender, age, city


def group_profiles(cfg: SimulateConfig, n_l1: int) -> np.ndarray:
    """(3 genders, 5 age buckets incl. unknown, n_l1) mean interest of each demographic group, rows sum to 1."""
    rng = stream(cfg.seed, "group_profiles")
    p = rng.gamma(1.0, size=(3, len(AGE_EDGES) + 2, n_l1))
    return p / p.sum(axis=2, keepdims=True)


def profile_tags(rng: np.random.Generator, theta: np.ndarray, tax: Taxonomy) -> np.ndarray:
    """Noisy interest tags: the top l1 names by preference and one l2 name under the favourite l1."""
    n, n_l1 = theta.shape
    noisy = np.log(theta + 1e-6) + rng.gumbel(size=theta.shape) * 0.5
    order = np.argsort(-noisy, axis=1, kind="stable")
    tags = np.full((n, 3), -1, dtype=np.int32)
    tags[:, 0] = tax.l1_term[order[:, 0]]
    second = theta[np.arange(n), order[:, 1]] > 1.0 / (2 * n_l1) if n_l1 > 1 else np.zeros(n, bool)
    if n_l1 > 1:
        tags[second, 1] = tax.l1_term[order[second, 1]]
    per_l1 = len(tax.l2_term) // n_l1
    l2 = order[:, 0] * per_l1 + rng.integers(0, per_l1, n)
    has_l2 = rng.random(n) < 0.7
    tags[has_l2, 2] = tax.l2_term[l2[has_l2]]
    return tags


def make_users(
    cfg: SimulateConfig, rng: np.random.Generator, n: int, tax: Taxonomy, reg_lo: int, reg_hi: int
) -> Users:
    """n users registered uniformly in [reg_lo, reg_hi) µs, preferences drawn around their group profile."""
    gender, age, city = _demographics(rng, n, 16, 70)
    n_l1 = len(tax.l1_term)
    profiles = group_profiles(cfg, n_l1)
    bucket = np.where(age < 0, len(AGE_EDGES) + 1, np.searchsorted(AGE_EDGES, age, side="right"))
    theta = np.empty((n, n_l1), dtype=np.float64)
    alpha_total = cfg.user_pref_concentration * n_l1
    for g in range(3):
        for b in range(len(AGE_EDGES) + 2):
            idx = np.flatnonzero((gender == g) & (bucket == b))
            if len(idx):
                alpha = np.maximum(profiles[g, b] * alpha_total, 1e-3)
                theta[idx] = rng.dirichlet(alpha, size=len(idx))
    theta = np.maximum(theta, 1e-9)
    theta /= theta.sum(axis=1, keepdims=True)
    register_ts = rng.integers(reg_lo, reg_hi, size=n, dtype=np.int64)
    return Users(
        gender=gender, age=age, city=city, theta=theta.astype(np.float32),
        activity=rng.lognormal(0.0, 1.0, n), register_ts=register_ts, tags=profile_tags(rng, theta, tax),
    )


def make_authors(cfg: SimulateConfig, n: int, n_l1: int) -> Authors:
    """n authors of varying quality, each mostly publishing in one l1 category."""
    rng = stream(cfg.seed, "authors")
    gender, age, city = _demographics(rng, n, 18, 65)
    quality = rng.beta(2.0, 2.0, n)
    productivity = rng.pareto(1.5, n) + 0.2
    followers = np.exp(rng.normal(4.0 + 3.0 * quality, 1.2)).astype(np.int64)
    return Authors(
        gender=gender, age=age, city=city, quality=quality, home_l1=rng.integers(0, n_l1, n),
        productivity=productivity, follower_count=followers,
    )
