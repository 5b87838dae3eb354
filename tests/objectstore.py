"""An S3 object store for tests: moto's standalone server on loopback stands in for S3 (nothing else is faked).

Fixtures (registered for every test through `pytest_plugins` in tests/conftest.py):

- `s3_server`: the running server's endpoint URL (session scope).
- `s3_env`: sets AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION / AWS_ENDPOINT_URL for one test.
- `s3_upload`: `s3_upload(local_dir, bucket, prefix) -> "s3://bucket/prefix"`, creating the bucket if needed.
- `s3_tiny_data`: the `tiny_data` simulator output uploaded once per session; returns its `s3://` URI (read-only).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
TINY_BUCKET = "ebr-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                        region_name=S3_ENV["AWS_DEFAULT_REGION"])


def upload_tree(endpoint: str, local_dir: str | Path, bucket: str, prefix: str = "") -> str:
    """Upload every file under `local_dir` to `s3://bucket/prefix/...` (bucket created if missing)."""
    client = _client(endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    root = Path(local_dir)
    prefix = prefix.strip("/")
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix, f.relative_to(root).as_posix()]))
        client.upload_file(str(f), bucket, key)
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> str:
    """The AWS environment pointing at the moto server, for one test; returns the endpoint URL."""
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture
def s3_upload(s3_env) -> Callable[..., str]:
    """`s3_upload(local_dir, bucket, prefix="") -> s3 URI` against the moto server."""
    return lambda local_dir, bucket, prefix="": upload_tree(s3_env, local_dir, bucket, prefix)


@pytest.fixture(scope="session")
def _s3_tiny_uri(s3_server, tiny_data) -> str:
    return upload_tree(s3_server, tiny_data, TINY_BUCKET, "raw/tiny")


@pytest.fixture
def s3_tiny_data(_s3_tiny_uri, s3_env) -> str:
    """`s3://ebr-tiny/raw/tiny`: the session's tiny dataset on the moto S3 server (do not modify it);
    the AWS environment points at that server for the test."""
    assert os.environ["AWS_ENDPOINT_URL"] == s3_env
    return _s3_tiny_uri
