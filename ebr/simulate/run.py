"""The simulation run: day by day, evolve the world, serve the day's searches and write every contract table.

Output is built in a temporary folder beside `out` and renamed into place at the end, so a failed or
interrupted run never leaves a partial dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ebr.contract.schema import EVENT_TYPES, SCHEMA_VERSION, STAGES, STR_LIST
from ebr.simulate.clicks import Engagement, search_clicks
from ebr.simulate.clock import (
    CHANGE_WINDOW_US,
    DAY_US,
    SECOND_US,
    anytime,
    change_times,
    day_start_us,
    traffic_times,
)
from ebr.simulate.config import SimulateConfig
from ebr.simulate.corpus import change_docs, make_docs, render_bodies, render_titles
from ebr.simulate.feed import feed_events
from ebr.simulate.people import GENDER_CODES, make_users, profile_tags
from ebr.simulate.policy import LexicalIndex, candidate_table, serve
from ebr.simulate.relevance import query_labels, request_grades
from ebr.simulate.streams import stream
from ebr.simulate.taxonomy import ATTRIBUTE_KEYS
from ebr.simulate.vocab import ROLE_CORE
from ebr.simulate.wordlists import EN_CITIES, ZH_CITIES
from ebr.simulate.world import World, build_world
from ebr.simulate.writer import PARQUET_OPTIONS, list_column, nullable, ts_array, write_partition

CHUNK = 20_000  # requests ranked at once (bounds memory at large scale)


@dataclass
class _Tally:
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    logged_out: int = 0
    impressions: int = 0
    exposed: int = 0
    clicks: int = 0
    distinct_queries: int = 0
    labelled_queries: int = 0
    changed_docs: int = 0
    new_docs: int = 0

    def add_rows(self, table: str, day: str, n: int) -> None:
        self.rows.setdefault(table, {})[day] = n


class _Text:
    """Arrow string arrays of the world's vocabulary for fast `take`."""

    def __init__(self, world: World) -> None:
        tax = world.tax
        self.terms = pa.array(tax.vocab.terms, type=pa.string())
        tokens, self.attr_offset = [], []
        for k, key in enumerate(ATTRIBUTE_KEYS):
            self.attr_offset.append(len(tokens))
            tokens += [f"{key}={tax.vocab.terms[t]}" for t in tax.attr_values[k]]
        self.attr_tokens = pa.array(tokens, type=pa.string())
        self.cities = pa.array(ZH_CITIES if tax.vocab.lang == "zh" else EN_CITIES, type=pa.string())
        self.genders = pa.array(GENDER_CODES.tolist(), type=pa.string())

    def city(self, idx: np.ndarray) -> pa.Array:
        return self.cities.take(pa.array(np.asarray(idx, dtype=np.int64), mask=np.asarray(idx) < 0))


def simulate(out: str | Path, cfg: SimulateConfig, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Write `cfg.days` days of contract tables under `out` (plus `_meta/`); returns a summary of the run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary, world = _run(tmp, cfg, progress)
        _write_meta(tmp, world, summary)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "data")
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    summary["root"] = str(out)
    return summary


def _run(root: Path, cfg: SimulateConfig, progress: bool) -> tuple[dict, World]:
    world = build_world(cfg)
    text = _Text(world)
    tally = _Tally()
    days = cfg.days_list()
    for d, day in enumerate(tqdm(days, desc="simulate", unit="day", disable=not progress)):
        start = day_start_us(day)
        doc_rows, doc_ts, user_rows, user_ts, author_rows, author_ts = _evolve(world, d, start, tally)
        tally.add_rows("docs", day, _write_docs(root, day, world, text, doc_rows, doc_ts))
        tally.add_rows("users", day, _write_users(root, day, world, text, user_rows, user_ts))
        tally.add_rows("authors", day, _write_authors(root, day, world, text, author_rows, author_ts))
        _traffic(root, day, d, start, world, text, tally, progress)
    sizes = world.sizes
    summary = {
        "days": days,
        "tables": {t: sum(v.values()) for t, v in tally.rows.items()},
        "rows_per_day": tally.rows,
        "sizes": sizes.as_dict(),
        "world": {
            "docs_total": world.docs.n, "users_total": world.users.n, "authors": world.authors.n,
            "leaves": world.tax.n_leaves, "brands": len(world.tax.brand_term), "intents": len(world.intents.weight),
            "query_pool": world.queries.n, "ambiguous_words": len(world.tax.ambiguous_term),
        },
        "stats": {
            "requests": tally.requests, "logged_out_share": tally.logged_out / max(tally.requests, 1),
            "impressions": tally.impressions, "exposed": tally.exposed, "clicks": tally.clicks,
            "ctr": tally.clicks / max(tally.exposed, 1), "distinct_queries_per_day": tally.distinct_queries / len(days),
            "labelled_queries": tally.labelled_queries, "changed_doc_rows": tally.changed_docs,
            "new_docs": tally.new_docs,
        },
    }
    return summary, world


def _evolve(world: World, d: int, start: int, tally: _Tally) -> tuple[np.ndarray, ...]:
    """Apply day d's changes and arrivals; returns (rows, event_timestamp) of docs, users and authors to log."""
    cfg, sizes, tax, docs, users, authors = world.cfg, world.sizes, world.tax, world.docs, world.users, world.authors
    if d == 0:
        full = (np.arange(docs.n), np.arange(users.n), np.arange(authors.n))
        return tuple(x for rows in full for x in (rows, np.full(len(rows), start, dtype=np.int64)))
    rng = stream(cfg.seed, "evolve", d)
    old = np.flatnonzero(docs.valid_ts < start)
    changed = np.sort(rng.choice(old, size=rng.binomial(len(old), cfg.doc_change_rate), replace=False))
    change_docs(cfg, rng, tax, docs, changed)
    changed_ts = change_times(rng, len(changed), start)
    publish = np.sort(anytime(rng, sizes.new_docs_per_day, start))
    first = docs.n
    docs.extend(make_docs(cfg, rng, tax, authors, len(publish), sizes.n_docs, publish, publish))
    tally.changed_docs += len(changed)
    tally.new_docs += len(publish)

    old_u = np.flatnonzero(users.register_ts < start)
    upd = np.sort(rng.choice(old_u, size=rng.binomial(len(old_u), cfg.user_change_rate), replace=False))
    users.tags[upd] = profile_tags(rng, users.theta[upd].astype(np.float64), tax)
    upd_ts = change_times(rng, len(upd), start)
    first_u = users.n
    users.extend(make_users(cfg, rng, sizes.new_users_per_day, tax, start + CHANGE_WINDOW_US, start + DAY_US))

    grow = np.sort(rng.choice(authors.n, size=rng.binomial(authors.n, cfg.author_change_rate), replace=False))
    authors.follower_count[grow] = (
        authors.follower_count[grow] * (1.0 + np.abs(rng.normal(0.03, 0.03, len(grow)))) + rng.poisson(2, len(grow))
    ).astype(np.int64)
    return (
        np.concatenate([changed, np.arange(first, docs.n)]), np.concatenate([changed_ts, publish]),
        np.concatenate([upd, np.arange(first_u, users.n)]), np.concatenate([upd_ts, users.register_ts[first_u:]]),
        grow, change_times(rng, len(grow), start),
    )


def _write_docs(root: Path, day: str, world: World, text: _Text, rows: np.ndarray, ts: np.ndarray) -> int:
    tax, docs = world.tax, world.docs
    titles = render_titles(docs, rows, tax)
    attrs = docs.attrs[rows].astype(np.int64)
    offs = np.array(text.attr_offset, dtype=np.int64)[None, :]
    tokens = np.where(attrs >= 0, attrs + offs, -1)
    brand = docs.brand[rows]
    cols = {
        "doc_id": pa.array(rows.astype(np.int64) + 1, type=pa.int64()),
        "title": pa.array(titles, type=pa.string()),
        "body": pa.array(render_bodies(docs, rows, titles, tax), type=pa.string()),
        "category_l1": text.terms.take(pa.array(tax.l1_term[tax.leaf_l1[docs.leaf[rows]]].astype(np.int64))),
        "category_l2": text.terms.take(pa.array(tax.l2_term[tax.leaf_l2[docs.leaf[rows]]].astype(np.int64))),
        "category_leaf": text.terms.take(pa.array(tax.leaf_term[docs.leaf[rows]].astype(np.int64))),
        "brand": text.terms.take(
            pa.array(tax.brand_term[np.maximum(brand, 0)].astype(np.int64), mask=brand < 0)
        ),
        "attributes": list_column(tokens, text.attr_tokens),
        "tags": list_column(docs.tags[rows], text.terms),
        "author_id": pa.array(docs.author[rows].astype(np.int64) + 1, type=pa.int64()),
        "publish_ts": ts_array(docs.publish_ts[rows]),
        "event_timestamp": ts_array(ts),
    }
    return write_partition(root, "docs", day, cols)


def _write_users(root: Path, day: str, world: World, text: _Text, rows: np.ndarray, ts: np.ndarray) -> int:
    u = world.users
    cols = {
        "user_id": pa.array(rows.astype(np.int64) + 1, type=pa.int64()),
        "gender": text.genders.take(pa.array(u.gender[rows].astype(np.int64))),
        "age": nullable(u.age[rows], u.age[rows] < 0, pa.int32()),
        "city": text.city(u.city[rows]),
        "profile_tags": list_column(u.tags[rows], text.terms),
        "register_ts": ts_array(u.register_ts[rows]),
        "event_timestamp": ts_array(ts),
    }
    return write_partition(root, "users", day, cols)


def _write_authors(root: Path, day: str, world: World, text: _Text, rows: np.ndarray, ts: np.ndarray) -> int:
    a = world.authors
    cols = {
        "author_id": pa.array(rows.astype(np.int64) + 1, type=pa.int64()),
        "gender": text.genders.take(pa.array(a.gender[rows].astype(np.int64))),
        "age": nullable(a.age[rows], a.age[rows] < 0, pa.int32()),
        "city": text.city(a.city[rows]),
        "follower_count": pa.array(a.follower_count[rows], type=pa.int64()),
        "event_timestamp": ts_array(ts),
    }
    return write_partition(root, "authors", day, cols)


def _sample_requests(world: World, d: int, start: int) -> dict[str, np.ndarray]:
    """Who searches what, when: users by activity, queries by popularity (often within a liked l1)."""
    cfg, users, pool, intents, tax = world.cfg, world.users, world.queries, world.intents, world.tax
    rng = stream(cfg.seed, "requests", d)
    n = world.sizes.requests_per_day
    ts = np.sort(traffic_times(rng, n, start))
    eligible = np.flatnonzero(users.register_ts < start)
    cw = np.cumsum(users.activity[eligible])
    user = eligible[np.searchsorted(cw, rng.random(n) * cw[-1], side="right").clip(max=len(eligible) - 1)]
    logged_out = rng.random(n) < cfg.logged_out_rate
    theta = users.theta[user].astype(np.float64)
    n_l1 = theta.shape[1]
    personal = ~logged_out & (rng.random(n) < cfg.query_pref_share)
    l1 = (np.cumsum(theta, axis=1) < rng.random(n)[:, None] * theta.sum(axis=1, keepdims=True)).sum(axis=1)
    l1 = np.minimum(l1, n_l1 - 1)
    gw = np.cumsum(pool.weight)
    query = np.searchsorted(gw, rng.random(n) * gw[-1], side="right").clip(max=pool.n - 1)
    u = rng.random(n)
    for c in range(n_l1):
        rows = np.flatnonzero(personal & (l1 == c))
        members = np.flatnonzero(pool.l1 == c)
        if len(rows) and len(members):
            mw = np.cumsum(pool.weight[members])
            query[rows] = members[np.searchsorted(mw, u[rows] * mw[-1], side="right").clip(max=len(members) - 1)]
    intent = pool.intent[query]
    la, lb = intents.leaf[intent, 0], np.maximum(intents.leaf[intent, 1], 0)
    rows = np.arange(n)
    wa = tax.leaf_weight[la] * np.where(logged_out, 1.0, theta[rows, tax.leaf_l1[la]])
    wb = tax.leaf_weight[lb] * np.where(logged_out, 1.0, theta[rows, tax.leaf_l1[lb]])
    reading = ((intents.n_read[intent] == 2) & (rng.random(n) * (wa + wb) >= wa)).astype(np.int64)
    return {"ts": ts, "user": user, "logged_out": logged_out, "query": query, "intent": intent, "reading": reading}


def _traffic(
    root: Path, day: str, d: int, start: int, world: World, text: _Text, tally: _Tally, progress: bool
) -> None:
    """Serve the day's requests, simulate clicks and feed events, label sampled queries; write fact tables."""
    cfg, docs, tax, pool = world.cfg, world.docs, world.tax, world.queries
    req = _sample_requests(world, d, start)
    n = len(req["ts"])
    index = LexicalIndex(docs, len(tax.vocab), tax.n_leaves, cfg)
    uq, qrow = np.unique(req["query"], return_inverse=True)
    cand, lex = candidate_table(index, pool, uq, progress)
    pref_all = world.users.preference()
    rng = stream(cfg.seed, "serve", d)
    parts = []
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        pref = pref_all[req["user"][s:e]]
        pref[req["logged_out"][s:e]] = 0.0
        served = serve(cfg, rng, index, docs, tax.leaf_l1, pool, cand, lex, qrow[s:e], req["query"][s:e],
                       req["ts"][s:e], pref)
        served.req = served.req + s
        parts.append(served)
    r_idx = np.concatenate([p.req for p in parts])
    doc = np.concatenate([p.doc for p in parts])
    stage = np.concatenate([p.stage for p in parts])
    position = np.concatenate([p.position for p in parts])
    score = np.concatenate([p.rank_score for p in parts])
    pref = np.concatenate([p.pref for p in parts])
    grade = request_grades(world.intents, req["intent"][r_idx], req["reading"][r_idx], docs, doc[:, None])[:, 0]
    eng = search_clicks(cfg, stream(cfg.seed, "clicks", d), position, grade, pref, docs.quality[doc].astype(float))

    ymd = day.replace("-", "")
    req_ids = pa.array([f"{ymd}-{i:07d}" for i in range(n)], type=pa.string())
    qu_leaf, qu_brand = pool.qu_leaf[req["query"]], pool.qu_brand[req["query"]]
    tally.add_rows("search_requests", day, write_partition(root, "search_requests", day, {
        "request_id": req_ids,
        "user_id": nullable(req["user"] + 1, req["logged_out"], pa.int64()),
        "query": pa.array(pool.text, type=pa.string()).take(pa.array(req["query"].astype(np.int64))),
        "query_category_leaf": text.terms.take(
            pa.array(tax.leaf_term[np.maximum(qu_leaf, 0)].astype(np.int64), mask=qu_leaf < 0)
        ),
        "query_brand": text.terms.take(
            pa.array(tax.brand_term[np.maximum(qu_brand, 0)].astype(np.int64), mask=qu_brand < 0)
        ),
        "event_timestamp": ts_array(req["ts"]),
    }))
    tally.add_rows("impressions", day, write_partition(root, "impressions", day, {
        "request_id": req_ids.take(pa.array(r_idx.astype(np.int64))),
        "doc_id": pa.array(doc.astype(np.int64) + 1, type=pa.int64()),
        "stage": pa.array(list(STAGES), type=pa.string()).take(pa.array(stage.astype(np.int64))),
        "position": nullable(position, position < 1, pa.int32()),
        "clicked": pa.array(eng.clicked, type=pa.bool_()),
        "liked": pa.array(eng.liked, type=pa.bool_()),
        "favorited": pa.array(eng.favorited, type=pa.bool_()),
        "commented": pa.array(eng.commented, type=pa.bool_()),
        "dwell_ms": nullable(eng.dwell_ms, ~eng.clicked, pa.int32()),
        "rank_score": nullable(np.nan_to_num(score), np.isnan(score), pa.float32()),
        "event_timestamp": ts_array(req["ts"][r_idx]),
    }))
    _write_events(root, day, d, start, world, req, r_idx, doc, position, eng, tally)
    _write_labels(root, day, d, world, uq, np.bincount(qrow, minlength=len(uq)), tally)
    tally.requests += n
    tally.logged_out += int(req["logged_out"].sum())
    tally.impressions += len(doc)
    tally.exposed += int((position >= 1).sum())
    tally.clicks += int(eng.clicked.sum())
    tally.distinct_queries += len(uq)


def _write_events(
    root: Path, day: str, d: int, start: int, world: World, req: dict[str, np.ndarray], r_idx: np.ndarray,
    doc: np.ndarray, position: np.ndarray, eng: Engagement, tally: _Tally,
) -> None:
    """user_events: logged-in search clicks and what followed them, plus the day's feed activity."""
    cfg = world.cfg
    rng = stream(cfg.seed, "events", d)
    end = start + DAY_US - 1
    hit = np.flatnonzero(eng.clicked & ~req["logged_out"][r_idx])
    click_ts = req["ts"][r_idx[hit]] + ((1.0 + 2.0 * position[hit] + rng.exponential(5.0, len(hit))) * SECOND_US)
    click_ts = click_ts.astype(np.int64)
    f_user, f_doc, f_ts, f_eng = feed_events(
        cfg, stream(cfg.seed, "feed", d), world.users, world.docs, world.tax.leaf_l1, start,
        world.sizes.feed_events_per_day,
    )
    users, docs, tss, types, sources = [], [], [], [], []
    for src, uid, did, t0, flags in (
        (0, req["user"][r_idx[hit]], doc[hit], click_ts, [eng.clicked[hit], eng.liked[hit], eng.favorited[hit],
                                                         eng.commented[hit], eng.purchased[hit]]),
        (1, f_user, f_doc, f_ts, [f_eng.clicked, f_eng.liked, f_eng.favorited, f_eng.commented,
                                  np.zeros(len(f_user), bool)]),
    ):
        dwell = (eng.dwell_ms[hit] if src == 0 else f_eng.dwell_ms).astype(np.float64) * 1000.0
        for etype, on in enumerate(flags):
            sel = np.flatnonzero(on)
            lag = 0.0 if etype == 0 else dwell[sel] * rng.uniform(0.5, 1.0, len(sel))
            users.append(uid[sel])
            docs.append(did[sel])
            tss.append(np.minimum(t0[sel] + np.asarray(lag, dtype=np.int64), end))
            types.append(np.full(len(sel), etype, dtype=np.int64))
            sources.append(np.full(len(sel), src, dtype=np.int64))
    u, dd, t, ty, so = (np.concatenate(x) for x in (users, docs, tss, types, sources))
    order = np.lexsort((ty, dd, u, t))
    u, dd, t, ty, so = u[order], dd[order], t[order], ty[order], so[order]
    tally.add_rows("user_events", day, write_partition(root, "user_events", day, {
        "user_id": pa.array(u.astype(np.int64) + 1, type=pa.int64()),
        "doc_id": pa.array(dd.astype(np.int64) + 1, type=pa.int64()),
        "event_type": pa.array(list(EVENT_TYPES), type=pa.string()).take(pa.array(ty)),
        "source": pa.array(["search", "feed"], type=pa.string()).take(pa.array(so)),
        "event_timestamp": ts_array(t),
    }))


def _write_labels(
    root: Path, day: str, d: int, world: World, uq: np.ndarray, counts: np.ndarray, tally: _Tally
) -> None:
    """Complete labels (every doc with label >= 1) of a sample of the day's queries, favouring frequent ones."""
    rng = stream(world.cfg.seed, "labels", d)
    k = min(world.sizes.label_queries_per_day, len(uq))
    p = np.sqrt(counts.astype(np.float64))
    chosen = np.sort(uq[rng.choice(len(uq), size=k, replace=False, p=p / p.sum())]) if k else uq[:0]
    q, doc, label = query_labels(world.queries, world.intents, world.docs, world.tax.n_leaves, chosen)
    tally.labelled_queries += len(chosen)
    tally.add_rows("relevance_labels", day, write_partition(root, "relevance_labels", day, {
        "query": pa.array(world.queries.text, type=pa.string()).take(pa.array(q)),
        "doc_id": pa.array(doc + 1, type=pa.int64()),
        "label": pa.array(label, type=pa.int8()),
        "complete": pa.array(np.ones(len(q), dtype=bool), type=pa.bool_()),
        "source": pa.array(["simulator"] * len(q), type=pa.string()),
    }))


def _write_meta(root: Path, world: World, summary: dict) -> None:
    """Side files the loader ignores: run description, synonym dictionary, core terms, query intents."""
    cfg = world.cfg
    tax, vocab = world.tax, world.tax.vocab
    meta = root / "_meta"
    meta.mkdir(parents=True, exist_ok=True)
    doc = {"generator": "ebr.simulate", "schema_version": SCHEMA_VERSION, "seed": cfg.seed,
           "config": cfg.model_dump(mode="json"), **summary}
    (meta / "simulation.json").write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                          encoding="utf-8")

    def norm(t: int) -> str:
        return vocab.terms[t].lower() if vocab.lang == "en" else vocab.terms[t]

    syn = "".join(f"{norm(a)}\t{norm(b)}\n" for a, b in tax.synonym_pairs)
    (meta / "synonyms.tsv").write_text("word\tsynonym\n" + syn, encoding="utf-8")
    core = "".join(
        f"{norm(t)}\t{'core' if role in ROLE_CORE else 'non_core'}\t{role}\n" for t, role in enumerate(vocab.roles)
    )
    (meta / "core_terms.tsv").write_text("term\tkind\trole\n" + core, encoding="utf-8")
    pq.write_table(_intent_table(world), meta / "query_intents.parquet", **PARQUET_OPTIONS)


def _intent_table(world: World) -> pa.Table:
    """One row per (query, reading): the structured intent behind each query text of the pool."""
    tax, pool, it = world.tax, world.queries, world.intents
    terms = tax.vocab.terms
    rec: dict[str, list] = {k: [] for k in ("query", "reading", "category_l1", "category_l2", "category_leaf",
                                            "brand", "attributes", "ambiguous", "tier", "weight")}
    tiers = ("head", "torso", "tail")
    for q in range(pool.n):
        i = int(pool.intent[q])
        for r in range(int(it.n_read[i])):
            lf, br = int(it.leaf[i, r]), int(it.brand[i, r])
            rec["query"].append(pool.text[q])
            rec["reading"].append(r)
            rec["category_l1"].append(terms[tax.l1_term[tax.leaf_l1[lf]]])
            rec["category_l2"].append(terms[tax.l2_term[tax.leaf_l2[lf]]])
            rec["category_leaf"].append(terms[tax.leaf_term[lf]])
            rec["brand"].append(terms[tax.brand_term[br]] if br >= 0 else None)
            rec["attributes"].append([
                f"{ATTRIBUTE_KEYS[k]}={terms[tax.attr_values[k][v]]}"
                for k, v in zip(it.attr_key[i, r], it.attr_val[i, r], strict=True) if k >= 0
            ])
            rec["ambiguous"].append(bool(it.ambiguous[i] >= 0))
            rec["tier"].append(tiers[int(pool.tier[q])])
            rec["weight"].append(float(pool.weight[q]))
    schema = pa.schema([
        ("query", pa.string()), ("reading", pa.int8()), ("category_l1", pa.string()),
        ("category_l2", pa.string()), ("category_leaf", pa.string()), ("brand", pa.string()),
        ("attributes", STR_LIST), ("ambiguous", pa.bool_()), ("tier", pa.string()), ("weight", pa.float64()),
    ])
    return pa.Table.from_pydict(rec, schema=schema)
