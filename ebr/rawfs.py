"""Where raw logs live: a local folder or an object-storage URI (`s3://bucket/prefix`, `gs://bucket/prefix`).

`raw_root(data_root)` turns what a user passed into a root: a `Path` for a local folder (every local read goes
through pathlib, exactly as before) or a normalized URI string for object storage (read through pyarrow.fs;
URIs stay strings, since `Path("s3://b/x")` mangles them). The other helpers take such a root or a path made
from it with `join`: they list partition folders and parquet files, test existence and read parquet or text.

S3 follows the standard AWS environment: credentials from the SDK's usual chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, profiles, roles), the region from AWS_REGION / AWS_DEFAULT_REGION,
and an S3-compatible server from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (passed as `endpoint_override`).
A missing bucket raises FileNotFoundError; bad credentials or an unreachable endpoint raise RawStorageError;
a malformed URI or an unsupported scheme raises ValueError. Every message names the URI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URI_SCHEMES = ("s3", "gs")
_SCHEME_ALIASES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_MANGLED_RE = re.compile(r"^(s3|s3a|gs|gcs):/([^/].*)$")  # what Path("s3://b/x") prints: s3:/b/x
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,254}$")

Root = Path | str


class RawStorageError(OSError):
    """Object storage could not be read: bad or missing credentials, unreachable endpoint, other server errors."""


@dataclass(frozen=True)
class _Uri:
    scheme: str
    bucket: str
    key: str  # without leading or trailing "/"

    @property
    def fs_path(self) -> str:
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def __str__(self) -> str:
        return f"{self.scheme}://{self.fs_path}"


def is_uri(root: object) -> bool:
    """True for an object-storage root (a URI string, or a Path that a URI was mangled into)."""
    if isinstance(root, Path):
        return bool(_MANGLED_RE.match(str(root)))
    return isinstance(root, str) and bool(_URI_RE.match(root))


def _parse(text: str) -> _Uri:
    m = _URI_RE.match(text)
    if not m:
        raise ValueError(f"data_root {text}: not a URI (want s3://bucket/prefix or gs://bucket/prefix)")
    scheme = _SCHEME_ALIASES.get(m.group(1).lower())
    if scheme is None:
        raise ValueError(f"data_root {text}: unsupported scheme {m.group(1)!r} "
                         f"(use a local path, s3://bucket/prefix or gs://bucket/prefix)")
    rest = m.group(2)
    if "?" in rest or "#" in rest:
        raise ValueError(f"data_root {text}: query strings and fragments are not supported; "
                         f"set the endpoint and credentials through the AWS / Google environment variables")
    bucket, _, key = rest.partition("/")
    if not _BUCKET_RE.match(bucket):
        raise ValueError(f"data_root {text}: {bucket!r} is not a valid bucket name")
    key = key.strip("/")
    if "//" in key or any(p in (".", "..") for p in key.split("/") if key):
        raise ValueError(f"data_root {text}: malformed object prefix {key!r}")
    return _Uri(scheme, bucket, key)


def raw_root(data_root: str | Path) -> Root:
    """A local `Path` (unchanged behaviour) or a normalized `scheme://bucket/prefix` string; checks the syntax
    only (no network): a bad scheme or malformed URI raises ValueError naming it."""
    if isinstance(data_root, Path):
        m = _MANGLED_RE.match(str(data_root))
        return str(_parse(f"{m.group(1)}://{m.group(2)}")) if m else data_root
    if isinstance(data_root, str) and _URI_RE.match(data_root):
        return str(_parse(data_root))
    return Path(data_root)


def join(root: Root, *parts: str) -> Root:
    """`root / part / ...` for a Path, `root/part/...` for a URI."""
    if isinstance(root, Path) and not is_uri(root):
        return root.joinpath(*parts)
    base = raw_root(root)
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])


def name(path: Root) -> str:
    """The last component of a path or URI."""
    return path.name if isinstance(path, Path) else str(path).rstrip("/").rsplit("/", 1)[-1]


# --- object storage ---------------------------------------------------------------------------------------

def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


_FS_CACHE: dict[tuple, Any] = {}


def _filesystem(uri: _Uri) -> Any:
    """The pyarrow filesystem of a URI, built from the environment (cached per environment)."""
    import pyarrow.fs as pafs

    if uri.scheme == "s3":
        endpoint = _endpoint()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        env = tuple(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                                 "AWS_PROFILE"))
        key = ("s3", endpoint, region, env)
        if key not in _FS_CACHE:
            kwargs: dict[str, Any] = {"region": region} if region else {}
            if endpoint:
                m = re.match(r"^(https?)://(.+?)/*$", endpoint)
                if m:
                    kwargs.update(scheme=m.group(1), endpoint_override=m.group(2))
                else:
                    kwargs.update(endpoint_override=endpoint)
            kwargs.update(connect_timeout=5.0, request_timeout=30.0,
                          retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
            try:
                _FS_CACHE[key] = pafs.S3FileSystem(**kwargs)
            except Exception as e:  # noqa: BLE001 - e.g. a malformed endpoint
                raise RawStorageError(f"data_root {uri}: cannot set up S3 access "
                                      f"(endpoint {endpoint or 'default'}): {e}") from e
        return _FS_CACHE[key]
    key = ("gs", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"), os.environ.get("STORAGE_EMULATOR_HOST"))
    if key not in _FS_CACHE:
        try:
            _FS_CACHE[key] = pafs.FileSystem.from_uri(f"gs://{uri.bucket}")[0]
        except Exception as e:  # noqa: BLE001
            raise RawStorageError(f"data_root {uri}: cannot set up GCS access: {e}") from e
    return _FS_CACHE[key]


def _translate(uri: _Uri, e: Exception) -> Exception:
    """One clear error naming the URI for whatever pyarrow / the SDK raised."""
    text = str(e)
    low = text.lower()
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    if "nosuchbucket" in low or "no such bucket" in low or "bucket does not exist" in low:
        return FileNotFoundError(f"data_root {uri}: bucket {uri.bucket!r} does not exist")
    if any(w in low for w in ("access_denied", "accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch",
                              "credential", "forbidden", "403", "expiredtoken", "permission")):
        return RawStorageError(f"data_root {uri}: access denied: check the credentials "
                               f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the cloud's default chain) ({first})")
    if any(w in low for w in ("curl", "connect", "network", "timeout", "timed out", "resolve", "unreachable")):
        where = _endpoint() if uri.scheme == "s3" else None
        return RawStorageError(f"data_root {uri}: cannot reach the object store"
                               f"{f' at {where}' if where else ''} ({first})")
    return RawStorageError(f"data_root {uri}: {first}")


def _info(uri: _Uri) -> Any:
    """pyarrow FileInfo of a URI; a NotFound path under a missing bucket raises FileNotFoundError."""
    import pyarrow.fs as pafs

    fs = _filesystem(uri)
    try:
        info = fs.get_file_info(uri.fs_path)
        if info.type == pafs.FileType.NotFound and uri.key:
            if fs.get_file_info(uri.bucket).type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"data_root {uri}: bucket {uri.bucket!r} does not exist")
        elif info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"data_root {uri}: bucket {uri.bucket!r} does not exist")
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - translated into one clear error
        raise _translate(uri, e) from None
    return info


def check_root(data_root: str | Path) -> Root:
    """`raw_root` plus, for a URI, one round trip that the bucket exists and can be read (clear errors if not)."""
    root = raw_root(data_root)
    if isinstance(root, str):
        _info(_parse(root))
    return root


def _entries(uri: _Uri) -> list[tuple[str, bool]]:
    """(name, is_dir) of the direct children of a URI folder; [] when it does not exist."""
    import pyarrow.fs as pafs

    fs = _filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(uri.fs_path, allow_not_found=True, recursive=False))
    except Exception as e:  # noqa: BLE001
        raise _translate(uri, e) from None
    if not infos:
        _info(uri)  # an empty listing under a missing bucket is an error, not an empty folder
    return [(i.base_name, i.type == pafs.FileType.Directory) for i in infos
            if i.type in (pafs.FileType.Directory, pafs.FileType.File)]


# --- the helpers every reader uses ---------------------------------------------------------------------------

def is_dir(path: Root) -> bool:
    """Whether `path` is a folder (for object storage: a prefix holding objects)."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return Path(path).is_dir()
    return _info(_parse(str(raw_root(path)))).type == pafs.FileType.Directory


def is_file(path: Root) -> bool:
    """Whether `path` is a file (an object)."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return Path(path).is_file()
    return _info(_parse(str(raw_root(path)))).type == pafs.FileType.File


def exists(path: Root) -> bool:
    """Whether `path` is a file or a folder."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return Path(path).exists()
    return _info(_parse(str(raw_root(path)))).type != pafs.FileType.NotFound


def list_dir(path: Root) -> list[tuple[Root, bool]]:
    """(child path, is_dir) of the direct children of a folder, sorted by name; [] when it is not a folder."""
    if not is_uri(path):
        p = Path(path)
        return [(c, c.is_dir()) for c in sorted(p.iterdir())] if p.is_dir() else []
    base = str(raw_root(path))
    return [(f"{base}/{n}", d) for n, d in sorted(_entries(_parse(base)))]


def list_files(path: Root, suffix: str = ".parquet") -> list[Root]:
    """Files of a folder whose name ends with `suffix`, sorted; [] when the folder is missing."""
    if not is_uri(path):
        p = Path(path)
        return sorted(f for f in p.glob(f"*{suffix}") if f.is_file()) if p.is_dir() else []
    base = str(raw_root(path))
    return [f"{base}/{n}" for n, d in sorted(_entries(_parse(base))) if not d and n.endswith(suffix)]


def _open(path: Root) -> tuple[Any, str | Path]:
    """(filesystem or None, path for pyarrow) of a file."""
    if not is_uri(path):
        return None, path
    uri = _parse(str(raw_root(path)))
    return _filesystem(uri), uri.fs_path


def read_parquet(path: Root, columns: list[str] | None = None) -> Any:
    """A parquet file as a pyarrow Table (what `pq.read_table(path, columns=...)` gives for a local file),
    without the writer's schema metadata: the pandas dtypes a writer recorded there (e.g. pandas' pyarrow-backed
    `list<element: string>[pyarrow]`) are not ours to follow, and some cannot even be rebuilt by `to_pandas`.
    Whatever wrote a file, the contract's arrow types are what count."""
    import pyarrow.parquet as pq

    fs, p = _open(path)
    table = pq.read_table(p, columns=columns) if fs is None else pq.read_table(p, columns=columns, filesystem=fs)
    return table.replace_schema_metadata(None)


def parquet_file(path: Root) -> Any:
    """A `pyarrow.parquet.ParquetFile` (footer metadata) of a local or remote file."""
    import pyarrow.parquet as pq

    fs, p = _open(path)
    if fs is None:
        return pq.ParquetFile(p)
    return pq.ParquetFile(fs.open_input_file(p))


def read_text(path: Root, encoding: str = "utf-8") -> str:
    """A text file's content."""
    fs, p = _open(path)
    if fs is None:
        return Path(p).read_text(encoding=encoding)
    try:
        with fs.open_input_stream(p) as f:
            return f.read().decode(encoding)
    except Exception as e:  # noqa: BLE001
        raise _translate(_parse(str(path)), e) from None
