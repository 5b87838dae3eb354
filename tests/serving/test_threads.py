"""The server's compute threads bound torch, Faiss and the BLAS libraries: an idle BLAS thread spins, so a
server left with BLAS on every core burns about twice the CPU of its requests (bench/results/serve.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import numpy as np  # loads numpy's BLAS before the limit, as the server's imports do
import faiss, torch
from threadpoolctl import threadpool_info
from serving.app import ServerRuntime
from serving.settings import ServerSettings
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
ServerRuntime(ServerSettings(bundles_dir="/nonexistent", compute_threads=int(sys.argv[1]))).set_threads()
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"before": before, "after": after, "torch": torch.get_num_threads(),
                  "faiss": faiss.omp_get_max_threads()}))
"""


def _probe(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # the libraries' defaults
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compute_threads_bound_every_blas_library_torch_and_faiss():
    got = _probe(1)
    assert got["after"], "numpy's BLAS is found"
    assert max(got["before"]) > 1 or os.cpu_count() == 1, got  # the default this guards against: one per core
    assert got["after"] == [1] * len(got["after"]) and got["torch"] == 1 and got["faiss"] == 1, got
