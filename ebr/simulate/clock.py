"""Simulated time: day boundaries in microseconds since the epoch (UTC) and a diurnal traffic profile.

Dimension changes of a day become valid in its first `CHANGE_WINDOW_US`; traffic (requests, feed events)
starts after it, so every request of a day sees that day's changed rows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
CHANGE_WINDOW_US = 600 * SECOND_US

# Relative traffic per UTC hour: quiet nights, lunch and evening peaks.
HOURLY_TRAFFIC = np.array(
    [0.5, 0.3, 0.2, 0.15, 0.15, 0.25, 0.5, 1.0, 1.4, 1.5, 1.5, 1.6,
     1.7, 1.5, 1.4, 1.4, 1.4, 1.5, 1.7, 2.0, 2.3, 2.4, 1.9, 1.1]
)


def day_start_us(day: str) -> int:
    """Microseconds since the epoch of 00:00 UTC of `day` (YYYY-MM-DD)."""
    d = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return int(d.timestamp()) * SECOND_US


def traffic_times(rng: np.random.Generator, n: int, start_us: int) -> np.ndarray:
    """n timestamps (µs) of one day drawn from the diurnal profile, all after the change window."""
    p = HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum()
    hour = rng.choice(24, size=n, p=p)
    lo = np.maximum(hour * 3600 * SECOND_US, CHANGE_WINDOW_US)
    hi = (hour + 1) * 3600 * SECOND_US
    return start_us + lo + (rng.random(n) * (hi - lo)).astype(np.int64)


def change_times(rng: np.random.Generator, n: int, start_us: int) -> np.ndarray:
    """n timestamps (µs) inside the change window at the start of a day."""
    return start_us + rng.integers(0, CHANGE_WINDOW_US, size=n, dtype=np.int64)


def anytime(rng: np.random.Generator, n: int, start_us: int) -> np.ndarray:
    """n timestamps (µs) uniform over the day after the change window (publications, registrations)."""
    return start_us + rng.integers(CHANGE_WINDOW_US, DAY_US, size=n, dtype=np.int64)
