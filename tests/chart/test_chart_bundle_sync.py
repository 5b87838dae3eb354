"""The object-store sync scripts the chart renders, run for real with /bin/sh.

What cannot run here is mocked: there is no object store, no network and no aws/gcloud CLI, so a small fake
CLI (`aws s3 cp|sync`, `gcloud storage cp|rsync`) maps s3://bucket/... and gs://bucket/... to a local
directory. The shell script itself - ordering, failure handling, the pointer rename, the sidecar loop - is
the one the chart renders into the pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chart.manifests import render

FAKE_CLI = r'''
import fnmatch, json, os, re, shutil, sys
from pathlib import Path

root = Path(os.environ["FAKE_STORE_ROOT"])
tool = Path(sys.argv[0]).name
args = sys.argv[1:]
with open(os.environ["FAKE_STORE_LOG"], "a") as f:
    f.write(json.dumps([tool] + args) + "\n")

def local(uri):
    scheme, rest = uri.split("://", 1)
    assert scheme == ("s3" if tool == "aws" else "gs"), uri
    return root / rest.rstrip("/")

pos, excludes, delete, i = [], [], False, 2
while i < len(args):
    a = args[i]
    if a in ("--exclude", "--endpoint-url"):
        if a == "--exclude":
            excludes.append(args[i + 1])
        i += 2
        continue
    if a.startswith("--exclude="):
        excludes.append(a.split("=", 1)[1])
    elif a in ("--delete", "--delete-unmatched-destination-objects"):
        delete = True
    elif not a.startswith("-"):
        pos.append(a)
    i += 1

verb = args[1]
if verb == "cp":
    src = local(pos[0])
    if not src.is_file():
        sys.exit(f"fatal error: no such object {pos[0]}")
    shutil.copyfile(src, pos[1])
elif verb in ("sync", "rsync"):
    if (root / ".fail-sync").exists():
        sys.exit("fatal error: connection reset")
    if tool == "aws":
        excluded = lambda rel: any(fnmatch.fnmatch(rel, p) for p in excludes)
    else:
        excluded = lambda rel: any(re.search(p, rel) for p in excludes)
    src, dst = local(pos[0]), Path(pos[1])
    wanted = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        if not excluded(rel):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst / rel)
    if delete:
        for p in sorted(dst.rglob("*"), reverse=True):
            rel = p.relative_to(dst).as_posix()
            if p.is_file() and rel not in wanted and not excluded(rel):
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
else:
    sys.exit(f"unexpected call {args}")
'''

PROVIDERS = {
    "s3": {"provider": "s3", "uri": "s3://ebr-artifacts/bundles/", "endpointUrl": "http://minio:9000"},
    "gcs": {"provider": "gcs", "uri": "gs://ebr-artifacts/bundles/",
            "image": {"repository": "google/cloud-sdk", "tag": "502.0.0-slim"}},
}
FILES = ("query_tower/model.pt", "index/index.faiss", "manifest.json")


class Env:
    def __init__(self, tmp_path: Path, chart, provider: str):
        self.bucket = tmp_path / "store" / "ebr-artifacts" / "bundles"
        self.bucket.mkdir(parents=True)
        self.dest = tmp_path / "mnt" / "bundles"
        self.dest.mkdir(parents=True)
        self.log = tmp_path / "calls.log"
        self.log.touch()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for tool in ("aws", "gcloud"):
            exe = bin_dir / tool
            exe.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
            exe.chmod(0o755)
        values = {"bundles": {"source": "objectStore", "mountPath": str(self.dest),
                              "objectStore": {**PROVIDERS[provider], "syncSidecar": {"enabled": True}}}}
        rendered = render(chart, values)
        self.init_script = rendered.container("bundle-sync-init")["args"][0]
        self.loop_script = rendered.container("bundle-sync")["args"][0]
        self.env = {e["name"]: e["value"] for e in rendered.container("bundle-sync-init")["env"]}
        self.env.update(
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            FAKE_STORE_ROOT=str(tmp_path / "store"),
            FAKE_STORE_LOG=str(self.log),
            HOME=str(tmp_path),
            CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        )

    def publish(self, version: str) -> None:
        for rel in FILES:
            p = self.bucket / version / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{version}:{rel}")
        (self.bucket / "CURRENT").write_text(version + "\n")

    def run_init(self) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-ec", self.init_script], env=self.env, capture_output=True,
                              text=True, timeout=30)

    def current(self) -> str | None:
        p = self.dest / "CURRENT"
        return p.read_text().strip() if p.exists() else None

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture(params=list(PROVIDERS))
def store(request, tmp_path, chart) -> Env:
    return Env(tmp_path, chart, request.param)


def test_initial_sync_copies_bundle_then_points_current_at_it(store):
    store.publish("20261101")
    res = store.run_init()
    assert res.returncode == 0, res.stderr
    assert store.current() == "20261101"
    for rel in FILES:
        assert (store.dest / "20261101" / rel).read_text() == f"20261101:{rel}"
    assert not (store.dest / ".CURRENT.tmp").exists()
    calls = store.calls()
    # the pointer is read before the listing, then renamed into place after the copy
    assert [c[2] for c in calls] == ["cp", "sync" if calls[0][0] == "aws" else "rsync"]
    assert calls[0][3].endswith("/CURRENT")
    if calls[0][0] == "aws":
        assert all("--endpoint-url" in c and "http://minio:9000" in c for c in calls)


def test_new_version_replaces_pruned_one(store):
    store.publish("20261101")
    assert store.run_init().returncode == 0
    store.publish("20261102")
    shutil.rmtree(store.bucket / "20261101")
    res = store.run_init()
    assert res.returncode == 0, res.stderr
    assert store.current() == "20261102"
    assert (store.dest / "20261102" / "manifest.json").exists()
    assert not (store.dest / "20261101").exists()


def test_failed_copy_keeps_the_old_pointer(store):
    store.publish("20261101")
    assert store.run_init().returncode == 0
    store.publish("20261102")
    (store.bucket.parent.parent / ".fail-sync").touch()
    res = store.run_init()
    assert res.returncode != 0
    assert store.current() == "20261101"
    assert not (store.dest / "20261102").exists()


def test_unchanged_pointer_is_not_rewritten(store):
    store.publish("20261101")
    assert store.run_init().returncode == 0
    before = (store.dest / "CURRENT").stat()
    time.sleep(0.01)
    assert store.run_init().returncode == 0
    after = (store.dest / "CURRENT").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_nothing_published_fails_the_init_container(store):
    res = store.run_init()
    assert res.returncode != 0
    assert store.current() is None


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sidecar_loop_hot_swaps_and_survives_a_failed_sync(store):
    store.publish("20261101")
    assert store.run_init().returncode == 0
    env = {**store.env, "SYNC_INTERVAL_S": "0.1"}
    proc = subprocess.Popen(["/bin/sh", "-ec", store.loop_script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        fail_flag = store.bucket.parent.parent / ".fail-sync"
        fail_flag.touch()
        store.publish("20261102")
        # the init run made one sync call; wait for the sidecar's first (failing) one
        assert _wait_for(lambda: sum(1 for c in store.calls() if c[2] in ("sync", "rsync")) >= 2)
        time.sleep(0.3)
        assert proc.poll() is None, "the sidecar must keep running after a failed sync"
        assert store.current() == "20261101"
        fail_flag.unlink()
        assert _wait_for(lambda: store.current() == "20261102")
        # when the pointer moved, the bundle it names was complete
        for rel in FILES:
            assert (store.dest / "20261102" / rel).read_text() == f"20261102:{rel}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
