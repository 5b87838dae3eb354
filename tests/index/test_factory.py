"""choose_factory follows the documented decision table; bad factory strings fail clearly."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebr.index import FactoryError, choose_factory, ivf_nlist, make_index, pq_bytes
from ebr.index.factory import FLAT_MAX_N, decide_factory, estimated_bytes, inspect_index

GIB = 1 << 30


@pytest.mark.parametrize(
    ("n", "d", "budget", "expected"),
    [
        (1_000, 64, GIB, "Flat"),
        (49_999, 128, GIB, "Flat"),
        (50_000, 64, GIB, "IVF1024,Flat"),
        (200_000, 64, GIB, "IVF2048,Flat"),
        (1_000_000, 64, GIB, "IVF4096,Flat"),
        (1_000_000, 64, 100 << 20, "IVF4096,PQ16,Refine(SQ8)"),
        (1_000_000, 64, 60 << 20, "OPQ16,IVF4096,PQ16"),
        (10_000_000, 128, 4 * GIB, "IVF16384,PQ32,Refine(SQ8)"),
        (10_000_000, 128, GIB, "OPQ32,IVF16384,PQ32"),
        (100_000_000, 64, 8 * GIB, "OPQ16,IVF65536,PQ16"),
    ],
)
def test_decision_table(n, d, budget, expected):
    assert choose_factory(n, d, budget) == expected


def test_hnsw_is_an_option_when_it_fits():
    assert choose_factory(1_000_000, 64, 2 * GIB, allow_hnsw=True) == "HNSW32"
    # HNSW's graph does not fit 400 MB, uncompressed IVF does
    assert choose_factory(1_000_000, 64, 400 << 20, allow_hnsw=True) == "IVF4096,Flat"
    assert choose_factory(10_000, 64, GIB, allow_hnsw=True) == "Flat"


def test_flat_threshold_is_configurable():
    assert choose_factory(100_000, 32, GIB, flat_max_n=200_000) == "Flat"
    assert choose_factory(100_000, 32, GIB, flat_max_n=FLAT_MAX_N).startswith("IVF")


def test_budget_too_small_names_the_budget():
    with pytest.raises(ValueError, match="memory_budget_bytes=1000 is too small for n=1000000"):
        choose_factory(1_000_000, 64, 1000)
    with pytest.raises(ValueError, match="too small for n=1000"):
        choose_factory(1_000, 64, 10)


def test_pq_bytes_is_quarter_of_dim_or_a_divisor():
    assert [pq_bytes(d) for d in (64, 128, 32, 4, 30, 2)] == [16, 32, 8, 1, 6, 1]
    for d in range(1, 300):
        assert d % pq_bytes(d) == 0 and pq_bytes(d) <= max(1, d // 4)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 500_000_000),
    d=st.sampled_from([16, 32, 48, 64, 96, 128, 256]),
    budget=st.integers(1 << 20, 64 * GIB),
)
def test_choice_fits_budget_and_follows_faiss_guidelines(n, d, budget):
    try:
        factory, _ = decide_factory(n, d, budget)
    except ValueError:
        assert estimated_bytes("flat", n, d) > budget
        return
    nlist = ivf_nlist(n)
    if factory == "Flat":
        assert n < FLAT_MAX_N and estimated_bytes("flat", n, d) <= budget
    elif factory.endswith(",Flat"):
        assert factory == f"IVF{nlist},Flat" and estimated_bytes("ivf_flat", n, d, nlist) <= budget
    elif factory.endswith(",Refine(SQ8)"):
        m = pq_bytes(d)
        assert factory == f"IVF{nlist},PQ{m},Refine(SQ8)"
        assert estimated_bytes("ivf_flat", n, d, nlist) > budget >= estimated_bytes("ivf_pq_sq8", n, d, nlist, m)
    else:
        m = pq_bytes(d)
        assert factory == f"OPQ{m},IVF{nlist},PQ{m}"
        assert estimated_bytes("ivf_pq_sq8", n, d, nlist, m) > budget >= estimated_bytes("ivf_pq", n, d, nlist, m)
    if "IVF" in factory:
        assert nlist & (nlist - 1) == 0
        assert 4 * math.sqrt(n) <= nlist <= 16 * math.sqrt(n) or nlist == 65_536 or n < 60 * nlist
        assert n >= 30 * nlist


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "OPQ4,IVF16,PQ4", "HNSW16", "IVF16,PQ4"])
def test_make_index_builds_inner_product_indexes(factory):
    index = make_index(factory, 16)
    layout = inspect_index(index)
    assert index.d == 16
    assert layout.kind == {"F": "flat", "I": "ivf", "O": "ivf", "H": "hnsw"}[factory[0]]
    assert layout.opq == factory.startswith("OPQ")
    assert layout.nlist == (16 if "IVF" in factory else 0)


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        ("NoSuchIndex", "not a valid Faiss index_factory string for d=16"),
        ("IVF16,PQ5", "not a valid Faiss index_factory string"),
        ("IDMap,Flat", "drop IDMap"),
    ],
)
def test_bad_factory_strings(factory, pattern):
    with pytest.raises(FactoryError, match=pattern):
        make_index(factory, 16)


@pytest.mark.parametrize("n", [200_000, 500_000, 1_000_000, 5_000_000])
def test_auto_at_scale_is_ivf_within_faiss_guidance(n):
    from ebr.index import IndexConfig
    from ebr.index.build import train_size

    cfg = IndexConfig()
    factory = choose_factory(n, 64, cfg.memory_budget_bytes, flat_max_n=cfg.flat_max_n)
    nlist = ivf_nlist(n)
    assert factory == f"IVF{nlist},Flat"
    assert 4 * math.sqrt(n) <= nlist <= 16 * math.sqrt(n)  # Faiss: 4..16 * sqrt(N) lists
    layout = inspect_index(make_index(factory, 64))
    assert layout.nlist == nlist and layout.parameters == ("nprobe",)
    size = train_size(layout, n, cfg.train_sample)
    assert 30 * nlist <= size <= 256 * nlist  # Faiss: train k-means on 30..256 points per list
