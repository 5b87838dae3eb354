"""Run `Expect` lists as Great Expectations suites over pandas frames and turn the results into `CheckResult`s.

One ephemeral GX context per run: a pandas data source, one dataframe asset, suite and validation definition
per batch, and optionally a Data Docs site written to a folder the caller chooses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ebr.validation.config import ValidationConfig
from ebr.validation.expectations import Expect
from ebr.validation.outcome import CheckResult, plain

DOCS_SITE = "ebr_validation"


@dataclass
class Batch:
    """One frame to validate and the expectations it must meet; `table` is the name the report shows."""

    name: str
    table: str
    frame: pd.DataFrame
    expects: list[Expect]
    index_columns: list[str] = field(default_factory=list)


def _condition(cond: tuple[str, str, Any]) -> Any:
    from great_expectations.expectations.row_conditions import Column

    column, op, value = cond
    if op == "==":
        return Column(column) == value
    if op == "!=":
        return Column(column) != value
    raise ValueError(f"unsupported row condition operator {op!r} (use '==' or '!=')")


def _gx_expectation(e: Expect, index: int) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, e.gx_type, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {e.gx_type!r}")
    kwargs = dict(e.kwargs)
    if e.condition is not None:
        kwargs["row_condition"] = _condition(e.condition)
    meta = {"ebr_index": index, "check": e.check, **plain(e.meta)}
    return cls(**kwargs, meta=meta, notes=e.description)


def _context(docs_dir: Path | None) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(ctx.get_config().data_docs_sites or {}):
        ctx.delete_data_docs_site(site)
    if docs_dir is not None:
        ctx.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return ctx


def _describe_expected(e: Expect) -> dict[str, Any]:
    out = plain(e.kwargs)
    if e.condition is not None:
        column, op, value = e.condition
        out["where"] = f"{column} {op} {value!r}"
    return out


def _to_check(batch: Batch, e: Expect, r: Any, cfg: ValidationConfig) -> CheckResult:
    res = dict(r.result or {})
    exc = r.exception_info or {}
    note = ""
    if exc.get("raised_exception"):
        note = f"the expectation raised: {exc.get('exception_message')}"
    details = res.get("details") or {}
    mismatched = details.get("mismatched") if isinstance(details, dict) else None
    if mismatched:
        note = "; ".join(f"{k} columns: {', '.join(map(str, v))}" for k, v in mismatched.items())
    examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
    status = "passed" if r.success else ("warning" if e.check in cfg.warn_only else "failed")
    return CheckResult(
        table=batch.table,
        column=e.column_label,
        check=e.check,
        expectation=r.expectation_config.type,
        status=status,
        description=e.description,
        expected=_describe_expected(e),
        observed=plain(res.get("observed_value")),
        unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"),
        examples=plain(list(examples)[: cfg.max_examples]),
        note=note or str(e.meta.get("note", "")),
    )


def run_batches(prefix: str, batches: list[Batch], cfg: ValidationConfig,
                docs_dir: Path | None = None) -> tuple[list[CheckResult], Path | None]:
    """Validate every batch with its suite `<prefix>.<batch.name>`; build Data Docs into `docs_dir` when given.

    Expectations on columns a frame lacks are not run: they come back as skipped checks naming the column.
    Returns the checks (in the order of the batches and their expectations) and the Data Docs index page.
    """
    import great_expectations as gx

    ctx = _context(docs_dir)
    source = ctx.data_sources.add_pandas("ebr")
    checks: list[CheckResult] = []
    for batch in batches:
        present = set(batch.frame.columns)
        runnable: list[Expect] = []
        for e in batch.expects:
            missing = [c for c in e.columns if c not in present]
            if missing:
                checks.append(CheckResult(batch.table, e.column_label, e.check, e.gx_type, "skipped", e.description,
                                          _describe_expected(e), note=f"not run: column {missing[0]!r} is missing"))
            else:
                runnable.append(e)
        if not runnable:
            continue
        name = f"{prefix}.{batch.name}"
        definition = source.add_dataframe_asset(batch.name).add_batch_definition_whole_dataframe("frame")
        suite = ctx.suites.add(gx.ExpectationSuite(
            name=name, expectations=[_gx_expectation(e, i) for i, e in enumerate(runnable)]))
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=definition, suite=suite))
        result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": cfg.max_examples}
        index_cols = [c for c in batch.index_columns if c in present]
        if index_cols:
            result_format["unexpected_index_column_names"] = index_cols
        run = vd.run(batch_parameters={"dataframe": batch.frame}, result_format=result_format)
        by_index = {int(r.expectation_config.meta["ebr_index"]): r for r in run.results}
        for i, e in enumerate(runnable):
            checks.append(_to_check(batch, e, by_index[i], cfg))
    index = None
    if docs_dir is not None:
        ctx.build_data_docs(site_names=[DOCS_SITE])
        index = docs_dir / "index.html"
    return checks, index
