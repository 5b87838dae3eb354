"""Benchmark of the query-tower server: HTTP load at several concurrencies against the in-process search path.

Bundle: n docs (default 1M) whose vectors mimic doc-tower output: a mixture of `--clusters` Gaussian clusters
(random unit centres, Zipf(1.0) weights, isotropic noise of L2 norm 1.0), L2-normalized, seeded; each cluster
has a leaf category (Zipf over the categories) and a dominant brand (70% of its docs; 20% carry no brand), so
structured fields agree with the embedding space as they do in real catalogues. The query tower is a real
`torch.export` program of the two-tower config the daily pipeline trains and ships (`ebr.train.two_tower_config.
default_model`: MGDSPR's structure, CPU-sized), untrained (its cost does not
depend on its weights; its query vectors are nearly collinear, so IVF probes similar lists for every request
and the search stage is, if anything, optimistic); the coarse ranker is a real exported default student with
a synthetic 32-d doc matrix. The index is `ebr.index.build_index` with the
default `auto` factory (IVF-Flat at 1M), tuned to ann_recall@100 >= 0.95. A real Feast SQLite online store
holds `--users` users (profile, sequences, recent queries) and the query-understanding fields of every query
(the top-1 doc's category for 70% of queries, its brand for 20%).

Requests: k=100; 80% logged-in users with features, 5% unknown users, 15% logged out; relevance control on.
The server (`python -m serving serve`, uvloop + httptools, compute on one thread per search worker) runs in its
own process, once per `--servers` variant (search workers x micro-batch rows); a separate load-generator
process (raw asyncio HTTP/1.1 on keep-alive connections, uvloop) runs each concurrency for `--seconds` after
a warm-up. Per-stage times come from the server's own timers (the Server-Timing header of every answer);
"http" is the client latency minus the server's handler time (HTTP parsing, ASGI, the client, and at
concurrency > 1 the wait for the event loop). The same requests are also run in-process through
`SearchEngine.search` (same bundle, same store) before the server starts, so the HTTP overhead is a measured ratio.

    python bench/bench_serve.py [--n 1000000] [--seconds 20] [--servers 1x1 4x16] [--out bench/results]

Writes OUT/serve.json and OUT/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ("features", "featurize", "batch_wait", "tower", "search", "filter", "lexical", "rescore")
TARGET_P99_MS_C1 = 10.0
TARGET_RPS = 300.0  # at TARGET_RPS_CONCURRENCY
TARGET_RPS_CONCURRENCY = 16
TARGET_PROBE_P99_MS = 1000.0  # /healthz under the heaviest level (a 3 s liveness timeout must never fire)
ANSWER_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 0.05
VERSION = "bench-v1"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="docs in the index (default 1M)")
    p.add_argument("--clusters", type=int, default=4000, help="Gaussian mixture components (default 4000)")
    p.add_argument("--users", type=int, default=2000, help="users in the online store (default 2000)")
    p.add_argument("--queries", type=int, default=400, help="distinct query texts (default 400)")
    p.add_argument("--requests", type=int, default=4000, help="request bodies in the mix (default 4000)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--servers", nargs="+", default=["1x1", "4x1", "4x16", "8x16"],
                   help="server variants side by side, WORKERSxMAX_BATCH[xPROCESSES] (search workers x micro-batch "
                        "rows [x server processes]); the last is the one the targets are checked on (default 1x1 "
                        "4x1 4x16 8x16)")
    p.add_argument("--batch-wait-ms", dest="batch_wait_ms", type=float, default=2.0,
                   help="EBR_BATCH_WAIT_MS of the batching variants (default 2)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level (default 3)")
    p.add_argument("--inprocess", type=int, default=600, help="requests timed in-process per mode (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tower-runtime", dest="tower_runtime", choices=["onnxruntime", "torch_export"],
                   default="onnxruntime", help="the query tower's runtime in the bundle (default: what training ships)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, removed)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    # load-generator mode (run by the benchmark itself in a separate process)
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[bench_serve {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- load generator


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, str, str]:
    """(status, Server-Timing, Retry-After) of one HTTP/1.1 answer; its body is read and dropped."""
    status = int((await reader.readline()).split()[1])
    length, timing, retry = 0, "", ""
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "server-timing":
            timing = value.strip()
        elif name == "retry-after":
            retry = value.strip()
    await reader.readexactly(length)
    return status, timing, retry


async def _connection(port: int, bodies: list[bytes], first: int, warm_until: float, deadline: float,
                      out: list[tuple[float, float, int, str, str]], sent: list[int]) -> None:
    """One keep-alive client posting bodies in turn until `deadline`; an answer slower than ANSWER_TIMEOUT_S is
    recorded as status 0 (a timeout) and the connection is reopened."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    try:
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += 1
            head = (b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            t0 = time.perf_counter()
            writer.write(head + body)
            try:
                status, timing, retry = await asyncio.wait_for(_read_answer(reader), ANSWER_TIMEOUT_S)
            except TimeoutError:
                status, timing, retry = 0, "", ""
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t1 = time.perf_counter()
            sent[0] += 1
            if t0 >= warm_until:
                out.append((t1, t1 - t0, status, timing, retry))
    finally:
        writer.close()


async def _prober(port: int, warm_until: float, deadline: float, out: list[float]) -> None:
    """GET /healthz every PROBE_INTERVAL_S on its own connection, as a kubelet does, recording each latency."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await _read_answer(reader)
            if t0 >= warm_until:
                out.append(time.perf_counter() - t0)
            await asyncio.sleep(PROBE_INTERVAL_S)
    finally:
        writer.close()


def _loadgen(args: argparse.Namespace) -> int:
    import uvloop

    bodies = [b.encode() for b in json.loads(args.bodies.read_text(encoding="utf-8"))]
    out: list[tuple[float, float, int, str, str]] = []
    probes: list[float] = []
    sent = [0]  # every request of the level, warm-up included
    conc = args.concurrency[0]

    async def run() -> float:
        start = time.perf_counter()
        warm_until = start + args.warmup
        deadline = warm_until + args.seconds
        step = max(1, len(bodies) // conc)
        await asyncio.gather(_prober(args.port, warm_until, deadline, probes),
                             *(_connection(args.port, bodies, c * step, warm_until, deadline, out, sent)
                               for c in range(conc)))
        return warm_until

    warm_until = uvloop.run(run())
    window = max(t for t, *_ in out) - warm_until if out else 0.0
    args.result.write_text(json.dumps({"window_s": window, "answers": [list(a) for a in out], "probes": probes,
                                       "sent": sent[0]}),
                           encoding="utf-8")
    return 0


# ----------------------------------------------------------------------------------------------- the data


def _corpus(n: int, clusters: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Docs (doc_id, title, category_leaf, brand) and their unit vectors [n, 64] (see the module docstring)."""
    from serving.synthetic import BRANDS, CATEGORIES

    d = 64
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    cat_w = 1.0 / np.arange(1, len(CATEGORIES) + 1)
    cluster_cat = rng.choice(len(CATEGORIES), size=clusters, p=cat_w / cat_w.sum())
    cluster_brand = rng.integers(0, len(BRANDS), size=clusters)
    vectors = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 262_144):
        lab = labels[start : start + 262_144]
        block = centres[lab] + rng.standard_normal((lab.size, d), dtype=np.float32) * np.float32(1.0 / np.sqrt(d))
        vectors[start : start + lab.size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    u = rng.random(n)
    brand_idx = np.where(u < 0.7, cluster_brand[labels], rng.integers(0, len(BRANDS), size=n))
    brands = np.where(u > 0.8, None, np.asarray(BRANDS, dtype=object)[brand_idx])
    cats = np.asarray(CATEGORIES, dtype=object)[cluster_cat[labels]]
    ids = np.arange(1, n + 1, dtype=np.int64)
    docs = pd.DataFrame({"doc_id": ids, "title": [f"doc {i}" for i in ids], "category_leaf": cats, "brand": brands})
    return docs, vectors


def _model_dir(work: Path, seed: int, runtime: str = "onnxruntime") -> tuple[Path, float]:
    """The shipped default two-tower model exported (untrained: its cost does not depend on its weights), its query
    tower converted to ONNX as the daily training does (unless `runtime` is torch_export), and the mean pairwise
    cosine of its query vectors."""
    import torch

    from ebr.bundle.layout import QUERY_TOWER_EXPORT
    from ebr.models.inputs import featurize_queries
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.two_tower_config import default_model
    from serving.synthetic import export_model, synthetic_docs

    model = TwoTowerModel(default_model()).eval()
    export_dir = export_model(model, work / QUERY_TOWER_EXPORT, synthetic_docs(4), VERSION)
    if runtime == "onnxruntime":
        from ebr.models.runtime import convert_query_tower

        convert_query_tower(export_dir)
    with torch.no_grad():
        v = model.query_tower(featurize_queries([{"query": q} for q in _query_texts(64, seed)],
                                                model.config.featurizer)).numpy()
    sim = v @ v.T
    return export_dir.parent, float((sim.sum() - len(v)) / (len(v) * (len(v) - 1)))


def _query_texts(n: int, seed: int) -> list[str]:
    from serving.synthetic import ADJECTIVES, BRANDS, CATEGORIES

    rng = np.random.default_rng([seed, 7])
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        cat = CATEGORIES[rng.integers(len(CATEGORIES))]
        lead = (ADJECTIVES + BRANDS)[rng.integers(len(ADJECTIVES) + len(BRANDS))]
        q = f"{lead} {cat}" if rng.random() < 0.7 else f"{lead} {cat} {rng.integers(10, 99)}"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def _sequence(kind: str, m: int, rng: np.random.Generator, n_docs: int) -> list:
    """One behaviour-sequence field of length m."""
    from serving.synthetic import CATEGORIES

    if kind == "doc_ids":
        return rng.integers(1, n_docs + 1, size=m).tolist()
    if kind == "categories":
        return [CATEGORIES[i] for i in rng.integers(0, len(CATEGORIES), size=m)]
    if kind == "authors":
        return rng.integers(1, 5000, size=m).tolist()
    return ["click"] * m


def _users_frame(view: str, users: np.ndarray, rng: np.random.Generator, n_docs: int) -> pd.DataFrame:
    from ebr.features.definitions import VIEW_BY_NAME
    from ebr.features.encoding import encode_list

    now = pd.Timestamp.now(tz="UTC")
    rows: dict[str, Any] = {"user_id": users, "event_timestamp": [now] * len(users)}
    lengths = {"rt": 10, "st": 40, "lt": 80}
    for f in VIEW_BY_NAME[view].features:
        if f.name.startswith("seq_"):
            w = f.name.split("_")[1]
            kind = f.name.split("_", 2)[2]
            rows[f.name] = [encode_list(_sequence(kind, lengths[w], rng, n_docs)) for _ in users]
        elif f.name == "user_gender":
            rows[f.name] = rng.choice(["m", "f", "u"], size=len(users)).tolist()
        elif f.name == "user_age":
            rows[f.name] = rng.integers(16, 70, size=len(users)).astype(float)
        elif f.name == "user_city":
            rows[f.name] = [f"city-{i}" for i in rng.integers(0, 300, size=len(users))]
        elif f.name == "user_profile_tags":
            rows[f.name] = [encode_list(["sports", "fashion"][: int(i)]) for i in rng.integers(0, 3, size=len(users))]
        elif f.name == "recent_queries":
            rows[f.name] = [encode_list(["red dress", "acme watch", "slim jacket"]) for _ in users]
        elif f.dtype == "int64":
            rows[f.name] = rng.integers(0, 100, size=len(users))
        else:
            rows[f.name] = rng.random(len(users)).astype(np.float32)
    return pd.DataFrame(rows)


def _feature_store(features_dir: Path, n_users: int, n_docs: int, seed: int) -> Any:
    from ebr.features import open_store

    store = open_store(features_dir)
    rng = np.random.default_rng([seed, 3])
    users = np.arange(1, n_users + 1, dtype=np.int64)
    for view in ("user_profile", "user_stats", "user_sequences", "user_realtime", "user_queries"):
        store.write_to_online_store(view, _users_frame(view, users, rng, n_docs))
    return store


def _write_query_understanding(store: Any, bundle: Any, texts: list[str], seed: int) -> dict[str, int]:
    """QU fields of every query: the top-1 doc's category (70% of queries) and brand (20%)."""
    from ebr.features.definitions import VIEW_BY_NAME
    from ebr.models.inputs import featurize_queries

    rng = np.random.default_rng([seed, 5])
    q = bundle.tower(featurize_queries([{"query": t} for t in texts], bundle.featurizer)).numpy()
    _, ids = bundle.searcher.search(q, 1)
    pos = np.searchsorted(bundle.docs.doc_ids, ids[:, 0])
    cats, brands = bundle.docs.category_leaf[pos], bundle.docs.brand[pos]
    with_cat = rng.random(len(texts)) < 0.7
    with_brand = rng.random(len(texts)) < 0.2
    rows: dict[str, Any] = {"query": texts, "event_timestamp": [pd.Timestamp.now(tz="UTC")] * len(texts)}
    for f in VIEW_BY_NAME["query_stats"].features:
        rows[f.name] = [None] * len(texts)
    rows["qu_category_leaf"] = [c if w else None for c, w in zip(cats, with_cat, strict=True)]
    rows["qu_brand"] = [b if w and b is not None else None for b, w in zip(brands, with_brand, strict=True)]
    store.write_to_online_store("query_stats", pd.DataFrame(rows))
    return {"queries": len(texts), "with_category": int(with_cat.sum()),
            "with_brand": sum(b is not None for b in rows["qu_brand"])}


def _bodies(n: int, texts: list[str], n_users: int, seed: int, rerank: bool) -> list[str]:
    rng = np.random.default_rng([seed, 11])
    out = []
    for _ in range(n):
        body: dict[str, Any] = {"query": texts[rng.integers(len(texts))], "k": 100}
        u = rng.random()
        if u < 0.80:
            body["user_id"] = int(rng.integers(1, n_users + 1))
        elif u < 0.85:
            body["user_id"] = int(n_users + 1 + rng.integers(1_000_000))
        if rerank:
            body["rerank"] = True
        out.append(json.dumps(body))
    return out


# ------------------------------------------------------------------------------------------------ measuring


def _pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def _timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def _summary(latencies_ms: np.ndarray, stages: list[dict[str, float]], window_s: float, errors: int,
             http: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        "requests": int(len(latencies_ms)), "errors": errors,
        "req_per_s": round(len(latencies_ms) / window_s, 1) if window_s > 0 else None,
        "p50_ms": round(_pct(latencies_ms, 50), 3), "p90_ms": round(_pct(latencies_ms, 90), 3),
        "p99_ms": round(_pct(latencies_ms, 99), 3), "max_ms": round(float(latencies_ms.max()), 3),
        "stages_mean_ms": {}, "stages_p50_ms": {},
    }  # fmt: skip
    names = [*STAGES, "total"] if http else list(STAGES)
    for s in names:
        vals = [st.get(s, 0.0) for st in stages]
        res["stages_mean_ms"][s] = round(float(np.mean(vals)), 3)
        res["stages_p50_ms"][s] = round(_pct(vals, 50), 3)
    if http:
        over = latencies_ms - np.array([st.get("total", 0.0) for st in stages])
        res["stages_mean_ms"]["http"] = round(float(over.mean()), 3)
        res["stages_p50_ms"]["http"] = round(_pct(over, 50), 3)
    return res


def _in_process(engine: Any, bodies: list[str], max_query_chars: int) -> dict[str, Any]:
    from serving.schema import SearchRequest

    lat, stages, dropped, looked = [], [], 0, 0
    for b in bodies[:20]:  # warm-up
        engine.search(SearchRequest.model_validate_json(b, context={"max_query_chars": max_query_chars}))
    for b in bodies:
        t0 = time.perf_counter()
        req = SearchRequest.model_validate_json(b, context={"max_query_chars": max_query_chars})
        r = engine.search(req)
        lat.append((time.perf_counter() - t0) * 1000)
        stages.append({k: v * 1000 for k, v in r.stages.items()})
        dropped += r.dropped
        looked += r.candidates
    t = float(sum(lat) / 1000)
    res = _summary(np.asarray(lat), stages, t, 0, http=False)
    res["relevance_dropped_share"] = round(dropped / max(looked, 1), 3)
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _variant(spec: str) -> tuple[int, int, int]:
    """(search workers, max batch, server processes) of a WORKERSxMAX_BATCH[xPROCESSES] spec such as 4x16 or
    1x16x2 (two `--workers` processes on one port)."""
    try:
        parts = [int(x) for x in spec.lower().split("x")]
        if len(parts) not in (2, 3):
            raise ValueError(spec)
    except ValueError as e:
        raise SystemExit(f"--servers: {spec!r} is not WORKERSxMAX_BATCH[xPROCESSES] (e.g. 4x16, 1x16x2)") from e
    workers, batch, processes = (*parts, 1) if len(parts) == 2 else parts
    if workers < 1 or batch < 1 or processes < 1:
        raise SystemExit(f"--servers: {spec!r} needs workers, max batch and processes >= 1")
    return workers, batch, processes


def _start_server(root: Path, features: Path, port: int, log: Path, spec: str = "1x1",
                  batch_wait_ms: float = 2.0) -> subprocess.Popen:
    workers, batch, processes = _variant(spec)
    env = {**os.environ, "EBR_LOG_LEVEL": "WARNING", "EBR_COMPUTE_THREADS": "1", "EBR_WATCH_INTERVAL_S": "3600",
           "EBR_SEARCH_WORKERS": str(workers), "EBR_MAX_BATCH": str(batch), "EBR_BATCH_WAIT_MS": str(batch_wait_ms),
           "EBR_MAX_QUEUE": "256",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "serving", "serve", "--bundles", str(root), "--feature-repo", str(features),
           "--port", str(port), "--workers", str(processes)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError("server did not become ready in 900 s")


def _batch_counts(port: int) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    values = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines()
              if ln.startswith(("ebr_serve_batch_size_sum", "ebr_serve_batch_size_count"))}
    return values.get("ebr_serve_batch_size_sum", 0.0), values.get("ebr_serve_batch_size_count", 0.0)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live children (the server's workers)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _http_level(port: int, bodies_file: Path, conc: int, args: argparse.Namespace, work: Path,
                server_pid: int) -> dict[str, Any]:
    before = _batch_counts(port)
    result = work / f"load-{conc}-{bodies_file.stem}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loadgen", "--port", str(port), "--bodies",
           str(bodies_file), "--concurrency", str(conc), "--seconds", str(args.seconds), "--warmup",
           str(args.warmup), "--result", str(result)]
    server_cpu0, children0 = _cpu_s(server_pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True)
    server_cpu = _cpu_s(server_pid) - server_cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen_cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
    data = json.loads(result.read_text(encoding="utf-8"))
    answers = data["answers"]
    ok = [a for a in answers if a[2] == 200]
    lat = np.array([a[1] * 1000 for a in ok])
    out = _summary(lat, [_timing(a[3]) for a in ok], data["window_s"], len(answers) - len(ok), http=True)
    shed = [a for a in answers if a[2] == 503]
    out["shed_503"] = len(shed)
    out["shed_with_retry_after"] = sum(1 for a in shed if a[4])
    out["other_5xx"] = sum(1 for a in answers if a[2] >= 500 and a[2] != 503)
    out["timeouts"] = sum(1 for a in answers if a[2] == 0)
    out["other_errors"] = len(answers) - len(ok) - len(shed) - out["other_5xx"] - out["timeouts"]
    probes = np.array(data["probes"]) * 1000
    out["healthz_p99_ms"] = round(_pct(probes, 99), 3) if len(probes) else None
    out["healthz_probes"] = int(len(probes))
    after = _batch_counts(port)  # includes the warm-up's batches: a mean over the whole level
    out["mean_batch"] = round((after[0] - before[0]) / max(after[1] - before[1], 1.0), 2)
    # CPU per answered request over the whole level (warm-up included in both the CPU and the count): what the
    # server costs, apart from the load generator that shares the machine here
    out["server_cpu_ms_per_req"] = round(server_cpu / max(data["sent"], 1) * 1000, 3)
    out["loadgen_cpu_ms_per_req"] = round(loadgen_cpu / max(data["sent"], 1) * 1000, 3)
    return out


# ------------------------------------------------------------------------------------------------- the report


def _tower_shape() -> str:
    """The shipped query tower's size in words, read from its config (so the note cannot go stale)."""
    from ebr.train.two_tower_config import default_model

    cfg = default_model()
    n = cfg.featurizer.max_len
    return (f"MGDSPR's blocks, hidden {cfg.query_tower.hidden_dim}, sequences of {n.seq_rt}/{n.seq_st}/{n.seq_lt} "
            f"events, {cfg.query_tower.lstm_layers}-layer LSTM, attention")


def _notes(ip: dict[str, Any], c1: dict[str, Any] | None, ct: dict[str, Any] | None,
           load: tuple[float, float, float], http: dict[str, Any], servers: list[str]) -> list[str]:
    """Where the time goes and why a target is missed, from the measured numbers."""
    st = ip["stages_mean_ms"]
    rest = sum(v for k, v in st.items() if k not in ("tower", "rescore"))
    notes = [
        f"In-process, the query tower takes {st['tower']:.1f} ms of {sum(st.values()):.1f} ms per request (mean): "
        f"the shipped default tower ({_tower_shape()}) on one thread at batch 1. Everything else (store lookups, "
        f"featurize, search, filter) takes {rest:.1f} ms.",
        "Relevance control runs inside retrieval, so nothing is dropped after the search: a constraint with fewer "
        "allowed docs than the scaled probe would walk is scored exactly over the allowed docs' own vectors "
        "(gathered once per constraint), a wider one probes the IVF with a bitmap selector and a list-aware "
        "nprobe; BM25 is restricted to the same docs. The search stage includes that work, the lexical stage BM25 "
        "and the merge.",
    ]
    if c1 is not None:
        notes.append(f"HTTP adds {c1['stages_mean_ms']['http']:.2f} ms per request at concurrency 1 (uvicorn, ASGI, "
                     "JSON, loopback and the load generator's own parsing).")
    if ct is not None and c1 is not None:
        notes.append(
            f"Server variants are WORKERSxMAX_BATCH[xPROCESSES]: search threads x rows per query-tower pass (1 = "
            f"no micro-batching) x server processes on one port (`--workers`, default 1); each runs every "
            f"concurrency level in turn on the same bundle and store. Load average "
            f"{load[0]:.1f} on {os.cpu_count()} cores at the end of the run (the load generator shares the machine "
            "with the server)."
        )
    at = f"c={TARGET_RPS_CONCURRENCY}"
    cpu = [(r["server_cpu_ms_per_req"], name) for name, r in http.items()
           if name.endswith(at) and r.get("server_cpu_ms_per_req")]
    if cpu:
        low, high = min(cpu), max(cpu)
        notes.append(
            f"Server CPU per request at concurrency {TARGET_RPS_CONCURRENCY}: {low[0]:.1f} ms ({low[1].split()[0]}) "
            f"to {high[0]:.1f} ms ({high[1].split()[0]}), the load generator's ~"
            f"{np.mean([r['loadgen_cpu_ms_per_req'] for r in http.values()]):.1f} ms beside it: one process is "
            "bound by its interpreter lock to about one core, so throughput grows with processes (or pods), not "
            "with search threads or micro-batches."
        )
    best = max(((r["req_per_s"], name) for name, r in http.items() if name.endswith(at)), default=None)
    if best is not None:
        notes.append(f"Highest throughput at concurrency {TARGET_RPS_CONCURRENCY}: {best[1].split()[0]} with "
                     f"{best[0]} req/s.")
    return notes


def _md(doc: dict[str, Any]) -> str:
    cols = [*STAGES, "http"]
    lines = [
        "# Query-tower server benchmark",
        "",
        f"{doc['created_at']} · {doc['machine']['cpus']} CPUs ({doc['machine']['processor']}) · load average "
        f"before/after {doc['machine']['loadavg_before']} / {doc['machine']['loadavg_after']} · "
        f"`python bench/bench_serve.py --n {doc['setup']['n']}`",
        "",
        f"Bundle: {doc['setup']['n']:,} docs, index `{doc['setup']['index']['factory']}` "
        f"{doc['setup']['index']['search_params']}, ann_recall@100 {doc['setup']['index']['ann_recall']}; "
        f"query tower: the shipped default config (`default_model()`), untrained (mean pairwise cosine of query "
        f"vectors {doc['setup']['query_vector_mean_cosine']:.3f}), on "
        f"{doc['setup'].get('tower_runtime', 'torch_export')}; "
        f"coarse ranker: default two-tower student. Requests: k=100, 80% users with features, 5% unknown, 15% logged "
        f"out, relevance control on (inside retrieval), retrieval `{doc['setup'].get('retrieval', 'ann')}` (the "
        f"server's default: embedding + BM25 channels merged).",
        "",
        "## HTTP (server process + load-generator process on loopback)",
        "",
        "Stage columns: mean ms per request from the server's Server-Timing header; `http` = client latency - "
        "server handler time (HTTP, ASGI, client, and queueing when concurrency > 1); `batch` = mean requests per "
        "query-tower pass (the server's ebr_serve_batch_size histogram over the level).",
        "",
        "| level | req/s | p50 ms | p90 ms | p99 ms | 503 shed | other errors | healthz p99 ms | batch | "
        "server CPU ms/req | load gen CPU ms/req | " + " | ".join(cols) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(cols),
    ]
    for name, r in doc["http"].items():
        st = r["stages_mean_ms"]
        lines.append(f"| {name} | {r['req_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
                     f"{r.get('shed_503', '')} | {r['errors'] - r.get('shed_503', 0)} | "
                     f"{r.get('healthz_p99_ms', '')} | "
                     f"{r.get('mean_batch', '')} | {r.get('server_cpu_ms_per_req', '')} | "
                     f"{r.get('loadgen_cpu_ms_per_req', '')} | "
                     + " | ".join(f"{st.get(c, 0):.2f}" for c in cols) + " |")
    lines += [
        "",
        "## In-process (`SearchEngine.search`, same bundle and store, one request at a time)",
        "",
        "| mode | req/s | p50 ms | p90 ms | p99 ms | " + " | ".join(STAGES) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(STAGES),
    ]
    for name, r in doc["in_process"].items():
        st = r["stages_mean_ms"]
        lines.append(f"| {name} | {r['req_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
                     + " | ".join(f"{st.get(c, 0):.2f}" for c in STAGES) + " |")
    o = doc["http_overhead"]
    if "ratio_mean" in o:
        lines += [
            "",
            f"HTTP overhead at concurrency 1, per request: client latency = server handler "
            f"{o['server_handler_mean_ms']} ms + {o['http_mean_ms']} ms = x{o['ratio_mean']} (means). Against the "
            f"in-process run (measured minutes earlier on the shared machine): p50 {o['http_p50_ms']} ms over HTTP vs "
            f"{o['in_process_p50_ms']} ms in-process = x{o['ratio_p50_vs_in_process']}.",
        ]
    lines += ["", "## Targets", ""]
    for t in doc["targets"]:
        lines.append(f"- {t['name']}: target {t['target']}, measured {t['measured']} -> "
                     f"{'met' if t['met'] else 'MISSED'}")
    if doc.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.loadgen:
        return _loadgen(args)
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    from ebr.index import IndexConfig
    from ebr.models.rankers.config import CoarseRankerConfig
    from serving.feature_source import OnlineFeatureSource
    from serving.loaded_bundle import LoadedBundle
    from serving.search import SearchEngine
    from serving.synthetic import build_bundle, build_coarse_ranker

    load_before = os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="ebr-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        docs, vectors = _corpus(args.n, args.clusters, args.seed)
        timings["corpus_s"] = time.perf_counter() - t0
        _log(f"corpus: {args.n} docs in {timings['corpus_s']:.1f}s")
        t0 = time.perf_counter()
        model_dir, mean_cos = _model_dir(work, args.seed, args.tower_runtime)
        rng = np.random.default_rng([args.seed, 9])
        cvec = rng.standard_normal((args.n, 32)).astype(np.float32)
        cvec /= np.linalg.norm(cvec, axis=1, keepdims=True)
        coarse_dir = build_coarse_ranker(work / "coarse", docs[["doc_id"]], CoarseRankerConfig(), doc_vectors=cvec)
        del cvec
        timings["export_s"] = time.perf_counter() - t0
        _log(f"exports in {timings['export_s']:.1f}s (query vectors mean cosine {mean_cos:.3f})")
        t0 = time.perf_counter()
        root = work / "bundles"
        bundle_dir = build_bundle(root, VERSION, docs=docs, model_dir=model_dir, vectors=vectors,
                                  index_config=IndexConfig(target_recall=0.95, recall_k=100, progress=False),
                                  coarse_ranker_dir=coarse_dir)
        del vectors, docs
        gc.collect()
        timings["bundle_s"] = time.perf_counter() - t0
        index_manifest = json.loads((bundle_dir / "index" / "manifest.json").read_text(encoding="utf-8"))
        _log(f"bundle in {timings['bundle_s']:.1f}s: {index_manifest['factory']} {index_manifest['search_params']}")

        t0 = time.perf_counter()
        features_dir = work / "features"
        features_dir.mkdir()
        store = _feature_store(features_dir, args.users, args.n, args.seed)
        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
        threadpool_limits(1, user_api="blas")  # as the server does (ServerRuntime.set_threads)
        bundle = LoadedBundle.open(bundle_dir, VERSION)
        texts = _query_texts(args.queries, args.seed)
        qu = _write_query_understanding(store, bundle, texts, args.seed)
        del store
        timings["store_s"] = time.perf_counter() - t0
        _log(f"feature store in {timings['store_s']:.1f}s: {qu}")

        plain = _bodies(args.requests, texts, args.users, args.seed, rerank=False)
        rerank = _bodies(args.requests, texts, args.users, args.seed, rerank=True)
        (work / "plain.json").write_text(json.dumps(plain), encoding="utf-8")
        (work / "rerank.json").write_text(json.dumps(rerank), encoding="utf-8")

        engine = SearchEngine(lambda b=bundle: b, OnlineFeatureSource(features_dir), None)
        engine.features.open()  # type: ignore[union-attr]
        engine.warm(bundle)
        in_process = {"plain": _in_process(engine, plain[: args.inprocess], 256),
                      "rerank": _in_process(engine, rerank[: args.inprocess], 256)}
        _log(f"in-process: {json.dumps(in_process['plain'])}")
        del engine, bundle
        gc.collect()

        http: dict[str, Any] = {}
        for spec in args.servers:
            port = args.port or _free_port()
            proc = _start_server(root, features_dir, port, work / f"server-{spec}.log", spec, args.batch_wait_ms)
            try:
                for conc in args.concurrency:
                    name = f"{spec} c={conc}"
                    http[name] = _http_level(port, work / "plain.json", conc, args, work, proc.pid)
                    _log(f"{name}: {json.dumps(http[name])}")
                if spec == args.servers[-1]:
                    http[f"{spec} c=1 rerank"] = _http_level(port, work / "rerank.json", 1, args, work, proc.pid)
                    _log(f"{spec} c=1 rerank: {json.dumps(http[f'{spec} c=1 rerank'])}")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    chosen = args.servers[-1]
    c1 = http.get(f"{chosen} c=1")
    ct = http.get(f"{chosen} c={TARGET_RPS_CONCURRENCY}")
    heaviest = http.get(f"{chosen} c={max(args.concurrency)}")
    ip = in_process["plain"]
    overhead: dict[str, Any] = {"in_process_p50_ms": ip["p50_ms"]}
    if c1:
        handler, http_ms = c1["stages_mean_ms"]["total"], c1["stages_mean_ms"]["http"]
        overhead.update({
            "server_handler_mean_ms": handler, "http_mean_ms": http_ms,
            "ratio_mean": round((handler + http_ms) / handler, 3), "http_p50_ms": c1["p50_ms"],
            "ratio_p50_vs_in_process": round(c1["p50_ms"] / ip["p50_ms"], 2),
        })  # fmt: skip
    targets = []
    if c1:
        targets.append({"name": f"p99 at concurrency 1 ({chosen})", "target": f"<= {TARGET_P99_MS_C1} ms",
                        "measured": f"{c1['p99_ms']} ms", "met": c1["p99_ms"] <= TARGET_P99_MS_C1})
    if ct:
        targets.append({"name": f"throughput at concurrency {TARGET_RPS_CONCURRENCY} ({chosen})",
                        "target": f">= {TARGET_RPS} req/s", "measured": f"{ct['req_per_s']} req/s",
                        "met": ct["req_per_s"] >= TARGET_RPS})
    if heaviest and heaviest.get("healthz_p99_ms") is not None:
        targets.append({"name": f"/healthz p99 at concurrency {max(args.concurrency)} ({chosen})",
                        "target": f"< {TARGET_PROBE_P99_MS:.0f} ms", "measured": f"{heaviest['healthz_p99_ms']} ms",
                        "met": heaviest["healthz_p99_ms"] < TARGET_PROBE_P99_MS})
    bad = {name: r["other_5xx"] + r["timeouts"] + r["other_errors"] + r["shed_503"] - r["shed_with_retry_after"]
           for name, r in http.items()}
    targets.append({"name": "no 5xx but shedding 503s with Retry-After, no timeouts, at every level",
                    "target": "0", "measured": str(sum(bad.values())), "met": not any(bad.values())})
    notes = _notes(ip, c1, ct, os.getloadavg(), http, args.servers)
    doc = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": {"n": args.n, "clusters": args.clusters, "users": args.users, "queries": qu,
                  "tower_runtime": args.tower_runtime, "retrieval": "auto",
                  "seconds_per_level": args.seconds, "warmup_s": args.warmup, "servers": args.servers,
                  "batch_wait_ms": args.batch_wait_ms,
                  "index": {k: index_manifest.get(k) for k in ("factory", "search_params")}
                  | {"ann_recall": index_manifest.get("ann_recall",
                                                    index_manifest.get("metrics", {}).get("ann_recall"))},
                  "query_vector_mean_cosine": round(mean_cos, 4),
                  "build_timings_s": {k: round(v, 1) for k, v in timings.items()}},
        "http": http,
        "in_process": in_process,
        "http_overhead": overhead,
        "targets": targets,
        "notes": notes,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "serve.md").write_text(_md(doc), encoding="utf-8")
    print(_md(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
