"""`validate_samples`: the parquet tables written by the samples step against their `SampleSpec`s."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebr.validation.config import ValidationConfig
from ebr.validation.expectations import row_count_between
from ebr.validation.frames import cast_compatible, to_frame
from ebr.validation.gx_run import Batch, run_batches
from ebr.validation.outcome import CheckResult, ValidationFailed, ValidationResult
from ebr.validation.report import render_report
from ebr.validation.sample_specs import SAMPLE_TABLES, SampleSpec
from ebr.validation.staging import staged_dir


def find_sample_tables(samples_dir: Path) -> dict[str, list[Path]]:
    """Tables in `samples_dir`: `<name>.parquet` files and `<name>/` folders of parquet files (any depth)."""
    found: dict[str, list[Path]] = {}
    for p in sorted(samples_dir.iterdir()):
        if p.name.startswith((".", "_")):
            continue
        if p.is_file() and p.suffix == ".parquet":
            found.setdefault(p.stem, []).append(p)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
            if files:
                found.setdefault(p.name, []).extend(files)
    return found


def _read(name: str, files: list[Path], spec: SampleSpec, checks: list[CheckResult]) -> pd.DataFrame | None:
    parts = []
    for f in files:
        try:
            parts.append(pq.read_table(f))
        except (OSError, pa.ArrowException) as e:
            checks.append(CheckResult(name, None, "schema", "read_parquet", "failed",
                                      f"{f} is a readable parquet file", observed=str(e)))
    if len(parts) != len(files):
        return None
    try:
        table = pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as e:
        checks.append(CheckResult(name, None, "schema", "read_parquet", "failed",
                                  "the files of the table have compatible schemas", observed=str(e)))
        return None
    wanted = {c.name: c.type for c in spec.table.columns + spec.optional}
    return to_frame(cast_compatible(table, wanted))


def validate_samples(samples_dir: str | Path, out_dir: str | Path, cfg: ValidationConfig | None = None, *,
                     tables: list[str] | None = None, specs: Mapping[str, SampleSpec] | None = None,
                     raise_on_failure: bool = True) -> ValidationResult:
    """Validate the sample tables in `samples_dir` (those named in `tables`, by default every table that has a
    spec) and write report.md, result.json and data_docs/ to `out_dir`; raise ValidationFailed on a failure
    unless `raise_on_failure` is false."""
    cfg = cfg or ValidationConfig()
    specs = SAMPLE_TABLES if specs is None else specs
    sdir = Path(samples_dir)
    if not sdir.is_dir():
        raise FileNotFoundError(f"samples folder {sdir} is not a directory")
    unknown = [t for t in tables or [] if t not in specs]
    if unknown:
        raise ValueError(f"no sample spec for table(s) {unknown}; known: {sorted(specs)}")
    found = find_sample_tables(sdir)
    wanted = list(tables) if tables is not None else [t for t in specs if t in found]
    checks: list[CheckResult] = []
    batches: list[Batch] = []
    if not wanted:
        checks.append(CheckResult("*", None, "schema", "find_tables", "failed",
                                  f"{sdir} holds at least one sample table ({', '.join(specs)})",
                                  observed=sorted(found)))
    for name in wanted:
        spec = specs[name]
        if name not in found:
            checks.append(CheckResult(name, None, "schema", "find_tables", "failed",
                                      f"{sdir}/{name}.parquet or {sdir}/{name}/ exists", observed="missing"))
            continue
        frame = _read(name, found[name], spec, checks)
        if frame is None:
            continue
        expects = spec.expectations(set(frame.columns), cfg.probability_sum_tolerance)
        expects.append(row_count_between("freshness", f"{name} is not empty", lo=1))
        batches.append(Batch(name, name, frame, expects, list(spec.table.key)))
    ignored = sorted(set(found) - set(wanted))
    context = [f"samples folder: `{sdir}`", f"tables validated: {', '.join(wanted) or 'none'}"]
    if ignored:
        context.append(f"tables without a spec (not validated): {', '.join(ignored)}")

    with staged_dir(out_dir) as tmp:
        docs_dir = tmp / "data_docs" if cfg.data_docs else None
        gx_checks, index = run_batches("samples", batches, cfg, docs_dir)
        result = ValidationResult("samples", str(sdir), None, checks + gx_checks)
        result.data_docs_index = None if index is None else Path(out_dir) / "data_docs" / "index.html"
        (tmp / "report.md").write_text(render_report(result, context), encoding="utf-8")
        (tmp / "result.json").write_text(result.to_json(), encoding="utf-8")
    result.out_dir = Path(out_dir)
    if raise_on_failure and not result.success:
        raise ValidationFailed(result)
    return result
