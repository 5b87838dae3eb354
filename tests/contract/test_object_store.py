"""Raw logs on object storage: the same contract checks and loads on `s3://` as on a local folder.

moto's standalone S3 server (tests/objectstore.py) stands in for S3; ebr reads it through pyarrow's real
S3FileSystem, configured from the AWS environment variables (AWS_ENDPOINT_URL points at the server).
"""

from __future__ import annotations

import pandas as pd
import pytest

from ebr import rawfs
from ebr.cli import main
from ebr.contract import list_days
from ebr.contract.load import load_table


def test_check_data_on_s3_matches_local(tiny_data, s3_tiny_data, capsys):
    local_rc = main(["check-data", "--data", str(tiny_data)])
    local_out = capsys.readouterr().out
    s3_rc = main(["check-data", "--data", s3_tiny_data])
    s3_out = capsys.readouterr().out
    assert s3_rc == local_rc == 0
    assert s3_out.replace(s3_tiny_data, "<root>") == local_out.replace(str(tiny_data), "<root>")


def test_load_table_on_s3_equals_local(tiny_data, s3_tiny_data, tiny_days):
    assert list_days(s3_tiny_data, "impressions") == list_days(tiny_data, "impressions")
    for table, days in (("impressions", tiny_days[-2:]), ("docs", None)):
        local, remote = load_table(tiny_data, table, days), load_table(s3_tiny_data, table, days)
        assert not local.violations and not remote.violations
        pd.testing.assert_frame_equal(remote.frame, local.frame)
        assert [p.rows for p in remote.partitions] == [p.rows for p in local.partitions]
        assert all(f.startswith(f"{s3_tiny_data}/{table}/ds=") for p in remote.partitions for f in p.files)


def test_samples_window_reads_s3(tiny_data, s3_tiny_data, tiny_days):
    from ebr.samples.window import load_window

    local, remote = load_window(tiny_data, tiny_days[-1], 2), load_window(s3_tiny_data, tiny_days[-1], 2)
    assert remote.days == local.days
    pd.testing.assert_frame_equal(remote.impressions, local.impressions)
    pd.testing.assert_frame_equal(remote.docs, local.docs)


def _cli_error(capsys, data: str) -> str:
    assert main(["check-data", "--data", data]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert data.rstrip("/") in err
    return err


def test_missing_bucket_is_one_clear_error(s3_env, capsys):
    err = _cli_error(capsys, "s3://nobucket/x")
    assert "bucket 'nobucket' does not exist" in err
    with pytest.raises(FileNotFoundError, match="s3://nobucket/x.*: bucket 'nobucket' does not exist"):
        load_table("s3://nobucket/x", "docs")


@pytest.mark.parametrize("uri, why", [("ftp://x", "unsupported scheme 'ftp'"),
                                      ("s3://", "not a valid bucket name"),
                                      ("s3://Bad_Bucket!/x", "not a valid bucket name")])
def test_bad_uri_is_one_clear_error(uri, why, capsys):
    assert why in _cli_error(capsys, uri)
    with pytest.raises(ValueError, match=why):
        rawfs.raw_root(uri)


def test_wrong_endpoint_is_one_clear_error(s3_tiny_data, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    err = _cli_error(capsys, s3_tiny_data)
    assert "cannot reach the object store at http://127.0.0.1:1" in err


def test_invalid_credentials_are_one_clear_error(s3_tiny_data, monkeypatch, capsys):
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks signatures
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    err = _cli_error(capsys, s3_tiny_data)
    assert "access denied" in err and "credentials" in err


def test_missing_prefix_is_a_contract_violation_like_a_missing_folder(s3_tiny_data, tmp_path, capsys):
    local = main(["check-data", "--data", str(tmp_path / "nothing")])
    local_out = capsys.readouterr().out
    remote = main(["check-data", "--data", f"{s3_tiny_data}/nothing"])
    remote_out = capsys.readouterr().out
    assert local == remote == 1
    assert "is not a directory" in local_out and "is not a directory" in remote_out


def test_mangled_path_uri_is_repaired():
    from pathlib import Path

    assert rawfs.raw_root(Path("s3://b-1/x/y/")) == "s3://b-1/x/y"
    assert rawfs.raw_root("data/raw") == Path("data/raw")
    assert rawfs.join("s3://b-1/x/", "docs", "ds=2026-01-01") == "s3://b-1/x/docs/ds=2026-01-01"
