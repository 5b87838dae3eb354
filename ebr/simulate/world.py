"""The simulated world on the first day: catalogue, authors, users, corpus, intents and queries.

`build_world` is deterministic in the config; it also lets tests and analyses read latent truths (doc
popularity and quality, users' preferences) that the written logs do not show.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebr.simulate.clock import DAY_US, day_start_us
from ebr.simulate.config import ScaleSizes, SimulateConfig
from ebr.simulate.corpus import Docs, make_docs
from ebr.simulate.people import Authors, Users, make_authors, make_users
from ebr.simulate.queries import Intents, QueryPool, build_intents, build_queries
from ebr.simulate.streams import stream
from ebr.simulate.taxonomy import Taxonomy, build_taxonomy

BACKLOG_DAYS = 365  # initial docs were published during the year before the first day
USER_HISTORY_DAYS = 3 * 365  # initial users registered during the three years before it


@dataclass
class World:
    """Everything simulated, as of the start of the first day (docs and users grow day by day)."""

    cfg: SimulateConfig
    sizes: ScaleSizes
    tax: Taxonomy
    authors: Authors
    users: Users
    docs: Docs
    intents: Intents
    queries: QueryPool


def build_world(cfg: SimulateConfig) -> World:
    """Draw the initial world from `cfg` (same config and seed, same world)."""
    sizes = cfg.sizes()
    start = day_start_us(cfg.start_date)
    tax = build_taxonomy(cfg, sizes)
    authors = make_authors(cfg, sizes.n_authors, sizes.n_l1)
    users = make_users(
        cfg, stream(cfg.seed, "users"), sizes.n_users, tax, start - USER_HISTORY_DAYS * DAY_US, start - 60_000_000
    )
    rng = stream(cfg.seed, "docs")
    publish = start - rng.integers(1, BACKLOG_DAYS * DAY_US, size=sizes.n_docs)
    docs = make_docs(cfg, rng, tax, authors, sizes.n_docs, sizes.n_docs, publish, publish * 0 + start)
    intents = build_intents(cfg, tax, sizes.n_intents)
    queries = build_queries(cfg, tax, intents)
    return World(cfg=cfg, sizes=sizes, tax=tax, authors=authors, users=users, docs=docs, intents=intents,
                 queries=queries)
