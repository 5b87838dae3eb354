"""Load contract tables from `<root>/<table>/ds=YYYY-MM-DD/*.parquet` and enforce the contract's rules.

Loading only reads: it never writes, so a failed load loses nothing. Every violation names the table,
the partition, the column, the number of bad rows and up to five example rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ebr import rawfs
from ebr.contract.schema import TABLES, TableSpec
from ebr.contract.violations import MAX_EXAMPLES, ContractError, Violation

_DS_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


@dataclass
class PartitionInfo:
    """What was read from one day partition: files, rows, columns the contract does not know, and warnings
    (what the contract ignores but a person should see: extra columns, files that are not parquet)."""

    table: str
    day: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    extra_columns: list[str] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)


@dataclass
class TableLoad:
    """A table loaded over some days: the rows (with a `ds` column), per-partition info and violations."""

    table: str
    frame: pd.DataFrame
    partitions: list[PartitionInfo]
    violations: list[Violation]


def _parse_day(text: str, what: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as e:
        raise ValueError(f"{what}: {text!r} is not a YYYY-MM-DD day") from e


def list_days(root: str | Path, table: str) -> list[str]:
    """Days that have a partition folder for `table`, sorted; folders not named `ds=YYYY-MM-DD` are skipped."""
    tdir = rawfs.join(rawfs.raw_root(root), table)
    days = []
    for p, p_is_dir in rawfs.list_dir(tdir):
        m = _DS_RE.match(rawfs.name(p))
        if p_is_dir and m:
            try:
                days.append(_parse_day(m.group(1), f"{tdir}/{rawfs.name(p)}"))
            except ValueError:
                continue
    return sorted(days)


def _bad_partition_folders(root: rawfs.Root, table: str) -> list[Violation]:
    tdir = rawfs.join(root, table)
    out = []
    for p, p_is_dir in rawfs.list_dir(tdir):
        if rawfs.name(p).startswith((".", "_")):
            continue
        m = _DS_RE.match(rawfs.name(p))
        ok = bool(m) and p_is_dir
        if ok:
            try:
                _parse_day(m.group(1), rawfs.name(p))
            except ValueError:
                ok = False
        if not ok:
            out.append(
                Violation(table, None, None, "partition", f"{p} is not a partition folder named ds=YYYY-MM-DD")
            )
    return out


def _examples(frame: pd.DataFrame, mask: np.ndarray, cols: list[str]) -> list[dict]:
    cols = [c for c in dict.fromkeys(cols) if c in frame.columns]
    rows = frame.loc[mask, cols].head(MAX_EXAMPLES)
    return [{k: (None if _isna(v) else _plain(v)) for k, v in r.items()} for r in rows.to_dict("records")]


def _isna(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v: object) -> object:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _cast_column(spec: TableSpec, day: str, fpath: str, arr: pa.ChunkedArray, name: str) -> tuple:
    """Cast one column to the contract type if the cast is safe; otherwise a violation."""
    col = spec.column(name)
    target = col.type
    if arr.type.equals(target):
        return arr, None
    if pa.types.is_timestamp(target):
        if not pa.types.is_timestamp(arr.type) or arr.type.tz is None:
            return None, Violation(
                spec.name, day, name, "type",
                f"{fpath}: type {arr.type} is not a timezone-aware timestamp (want {target})",
            )
        try:
            return pc.cast(arr, target, safe=True), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            return None, Violation(spec.name, day, name, "type", f"{fpath}: cannot cast {arr.type} to {target}: {e}")
    compatible = (
        (pa.types.is_integer(target) and pa.types.is_integer(arr.type))
        or (pa.types.is_floating(target) and (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)))
        or (pa.types.is_string(target) and (pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type)))
        or (pa.types.is_list(target) and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)))
        or (pa.types.is_boolean(target) and pa.types.is_boolean(arr.type))
        or pa.types.is_null(arr.type)
    )
    if not compatible:
        msg = f"{fpath}: type {arr.type} is not compatible with {target}"
        return None, Violation(spec.name, day, name, "type", msg)
    try:
        return pc.cast(arr, target, safe=True), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        return None, Violation(spec.name, day, name, "type", f"{fpath}: cannot cast {arr.type} to {target}: {e}")


def read_partition(root: str | Path, table: str, day: str) -> tuple[pa.Table | None, PartitionInfo, list[Violation]]:
    """Read one day partition (union of its parquet files), cast to the contract schema, report extras."""
    spec = TABLES[table]
    pdir = rawfs.join(rawfs.raw_root(root), table, f"ds={day}")
    info = PartitionInfo(table=table, day=day)
    violations: list[Violation] = []
    entries = rawfs.list_dir(pdir)  # one listing (one LIST call on object storage) for parquet files and strays
    files = [p for p, p_is_dir in entries if not p_is_dir and rawfs.name(p).endswith(".parquet")]
    for p, p_is_dir in entries:
        name = rawfs.name(p)
        if not name.startswith((".", "_")) and (p_is_dir or not name.endswith(".parquet")):
            info.warnings.append(Violation(table, day, None, "stray_file",
                                           f"{p} is not a parquet file; ignored (only *.parquet is read)"))
    if not files:
        violations.append(Violation(table, day, None, "partition", f"{pdir} holds no parquet file"))
        return None, info, violations
    parts = []
    for f in files:
        info.files.append(str(f))
        try:
            t = rawfs.read_parquet(f)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported, not raised
            violations.append(Violation(table, day, None, "file", f"{f} is not a readable parquet file: {e}"))
            continue
        names = set(t.column_names)
        for extra in sorted(names - set(spec.names)):
            if extra not in info.extra_columns and extra != "ds":
                info.extra_columns.append(extra)
                info.warnings.append(Violation(table, day, extra, "extra_column",
                                               f"{f}: column {extra!r} is not in the contract; ignored"))
        missing = [c for c in spec.names if c not in names]
        for m in missing:
            violations.append(Violation(table, day, m, "missing_column", f"{f}: required column {m!r} is missing"))
        if missing:
            continue
        cols = []
        ok = True
        for name in spec.names:
            arr, v = _cast_column(spec, day, str(f), t.column(name), name)
            if v is not None:
                violations.append(v)
                ok = False
            cols.append(arr)
        if ok:
            parts.append(pa.Table.from_arrays(cols, schema=spec.schema))
    if violations or not parts:
        return None, info, violations
    table_ = pa.concat_tables(parts)
    info.rows = table_.num_rows
    if info.rows == 0 and spec.kind == "fact":  # a dimension day may have no changes; a fact day has events
        violations.append(Violation(table, day, None, "empty_partition",
                                    f"{pdir}: {len(files)} parquet file(s) but no rows (a lost delivery?)"))
        return None, info, violations
    return table_, info, violations


def _day_bounds(day: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return pd.Timestamp(start), pd.Timestamp(start + timedelta(days=1))


def _check_rows(spec: TableSpec, day: str, df: pd.DataFrame) -> list[Violation]:
    """Row-level rules of one partition: nulls, enums, ranges, timestamps in day, flags, duplicates."""
    out: list[Violation] = []
    t = spec.name

    def add(mask: np.ndarray, column: str | None, rule: str, message: str, cols: list[str]) -> None:
        n = int(mask.sum())
        if n:
            out.append(Violation(t, day, column, rule, message, n, _examples(df, mask, cols)))

    key_cols = list(spec.key) or list(spec.id_columns)
    for c in spec.columns:
        if not c.nullable:
            add(df[c.name].isna().to_numpy(), c.name, "not_null", "null values in a non-null column",
                key_cols + [c.name])
        if c.enum is not None:
            bad = (~df[c.name].isin(c.enum) & df[c.name].notna()).to_numpy()
            add(bad, c.name, "enum", f"values outside {list(c.enum)}", key_cols + [c.name])
        if c.min is not None:
            values = df[c.name].to_numpy(dtype="float64", na_value=np.nan)
            add(values < c.min, c.name, "range", f"values below {c.min:g}", key_cols + [c.name])
    if spec.has_event_timestamp:
        lo, hi = _day_bounds(day)
        ts = df["event_timestamp"]
        add(((ts < lo) | (ts >= hi)).to_numpy(), "event_timestamp", "timestamp_in_day",
            f"event_timestamp outside its partition day [{lo.isoformat()}, {hi.isoformat()})",
            key_cols + ["event_timestamp"])
    if t == "impressions":
        exposed = (df["stage"] == "exposed").to_numpy()
        has_pos = df["position"].notna().to_numpy()
        add(exposed != has_pos, "position", "position_iff_exposed", "position must be set iff stage = 'exposed'",
            ["request_id", "doc_id", "stage", "position"])
        pos = df["position"].to_numpy(dtype="float64", na_value=np.nan)
        add(has_pos & (pos < 1), "position", "range", "position must be >= 1 (1-based)",
            ["request_id", "doc_id", "position"])
        clicked = df["clicked"].to_numpy(dtype=bool)
        add(clicked & ~exposed, "clicked", "clicked_implies_exposed", "clicked is true but stage is not 'exposed'",
            ["request_id", "doc_id", "stage", "clicked"])
        for flag in ("liked", "favorited", "commented"):
            add(df[flag].to_numpy(dtype=bool) & ~clicked, flag, f"{flag}_implies_clicked",
                f"{flag} is true but clicked is false", ["request_id", "doc_id", "clicked", flag])
    if t == "relevance_labels":
        add(~df["label"].isin([0, 1, 2]).to_numpy(), "label", "enum", "label must be 0, 1 or 2",
            ["query", "doc_id", "label"])
    if spec.key:  # every keyed table: (doc_id, event_timestamp) in docs, request_id in search_requests, ...
        keys = list(spec.key)
        dup = df.duplicated(subset=keys, keep=False).to_numpy()
        add(dup, ",".join(keys), "duplicate_key", f"duplicate key ({', '.join(keys)})", keys)
    return out


def _empty_frame(spec: TableSpec) -> pd.DataFrame:
    df = spec.schema.empty_table().to_pandas()
    df["ds"] = pd.Series([], dtype="object")
    return df


def load_table(root: str | Path, table: str, days: list[str] | None = None) -> TableLoad:
    """Read `table` over `days` (all when None), checking every row-level rule; never raises on bad data."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; contract tables: {sorted(TABLES)}")
    spec = TABLES[table]
    root = rawfs.raw_root(root)
    violations = _bad_partition_folders(root, table)
    available = list_days(root, table)
    wanted = available if days is None else [_parse_day(d, "day") for d in days]
    frames, infos = [], []
    for day in wanted:
        if day not in available:
            violations.append(Violation(table, day, None, "partition", f"partition {root}/{table}/ds={day} is missing"))
            continue
        t, info, vs = read_partition(root, table, day)
        infos.append(info)
        violations.extend(vs)
        if t is None:
            continue
        df = t.to_pandas(types_mapper=None)
        violations.extend(_check_rows(spec, day, df))
        df["ds"] = day
        frames.append(df)
    frame = pd.concat(frames, ignore_index=True) if frames else _empty_frame(spec)
    return TableLoad(table=table, frame=frame, partitions=infos, violations=violations)


def check_references(root: str | Path, impressions: pd.DataFrame) -> list[Violation]:
    """Impressions' request_id must exist in search_requests of the same or previous day, and doc_id in docs
    as of the request time (a doc's first version must be valid at the impression's timestamp)."""
    out: list[Violation] = []
    if impressions.empty:
        return out
    root = rawfs.raw_root(root)
    req_days = list_days(root, "search_requests")
    doc_first = _doc_first_seen(root)
    for day, part in impressions.groupby("ds", sort=True):
        prev = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        ids: set[str] = set()
        for d in (prev, day):
            if d in req_days:
                p = rawfs.join(root, "search_requests", f"ds={d}")
                for f in rawfs.list_files(p, ".parquet"):
                    ids.update(rawfs.read_parquet(f, columns=["request_id"]).column(0).to_pylist())
        bad = ~part["request_id"].isin(ids).to_numpy()
        if bad.any():
            out.append(Violation("impressions", day, "request_id", "request_exists",
                                 "request_id not found in search_requests of the same or previous day",
                                 int(bad.sum()), _examples(part, bad, ["request_id", "doc_id"])))
        first = part["doc_id"].map(doc_first)
        unknown = first.isna().to_numpy()
        not_yet = (~first.isna() & (first > part["event_timestamp"])).to_numpy()
        if unknown.any():
            out.append(Violation("impressions", day, "doc_id", "doc_exists", "doc_id not found in docs",
                                 int(unknown.sum()), _examples(part, unknown, ["request_id", "doc_id"])))
        if not_yet.any():
            out.append(Violation("impressions", day, "doc_id", "doc_exists_as_of",
                                 "doc_id exists in docs only after the request time", int(not_yet.sum()),
                                 _examples(part, not_yet, ["request_id", "doc_id", "event_timestamp"])))
    return out


def _doc_first_seen(root: rawfs.Root) -> pd.Series:
    firsts = []
    for day in list_days(root, "docs"):
        for f in rawfs.list_files(rawfs.join(root, "docs", f"ds={day}"), ".parquet"):
            try:
                t = rawfs.read_parquet(f, columns=["doc_id", "event_timestamp"])
            except Exception:  # noqa: BLE001 - unreadable docs files are reported by load_table("docs")
                continue
            firsts.append(t.to_pandas())
    if not firsts:
        return pd.Series(dtype="datetime64[us, UTC]")
    docs = pd.concat(firsts, ignore_index=True)
    return docs.groupby("doc_id")["event_timestamp"].min()


def load(root: str | Path, table: str, days: list[str] | None = None) -> pd.DataFrame:
    """The union of `table`'s partitions over `days` (all when None) as a DataFrame with a `ds` column.

    Raises ContractError listing every violation (incl. referential rules for impressions)."""
    res = load_table(root, table, days)
    violations = list(res.violations)
    if table == "impressions" and not violations:
        violations.extend(check_references(root, res.frame))
    if violations:
        raise ContractError(violations)
    return res.frame
