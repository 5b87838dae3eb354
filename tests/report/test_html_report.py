"""The run report page (ebr/report): every section from the records the steps write, numbers equal to those
records, markup in names escaped, nothing fetched from outside the file; a failed run's page; and the page as
headless Chromium renders it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ebr.evaluate.report import SUMMARY_METRICS
from ebr.report import REPORT_HTML, write_html_report
from ebr.report.html import MISSING
from tests.report import workspace as wsf

SECTIONS = ("summary", "steps", "validation", "evaluation", "recall", "index", "training", "gate")
CHROMIUM_TIMEOUT_S = 120
NOT_INSTALLED = "chromium not installed: run .ci/system-deps.sh"


class Page(HTMLParser):
    """The parts of the page the tests read: tables by id (rows of cell texts), sections by id (their text),
    every src/href attribute and every tag name."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: dict[str, str] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self._table: str | None = None
        self._section: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        for name in ("src", "href"):
            if name in a:
                self.attrs.append((tag, name, a[name] or ""))
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section or ""] = ""
        elif tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self.sections[self._section] += data

    def rows(self, table_id: str) -> dict[str, list[str]]:
        """{first cell: the other cells} of the table's body rows."""
        return {r[0]: r[1:] for r in self.tables[table_id][1:]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    made = wsf.finished_run(tmp_path_factory.mktemp("finished"))
    made["html"] = write_html_report(made["ws"], wsf.DAY)
    made["text"] = made["html"].read_text(encoding="utf-8")
    made["page"] = Page(made["text"])
    return made


def _step_records(ws) -> dict[str, dict]:
    return {(r := json.loads(p.read_text(encoding="utf-8")))["step"]: r
            for p in (ws.reports(wsf.DAY) / "steps").glob("*.json")}


def test_report_lands_beside_the_run_records_with_every_section(finished):
    assert finished["html"] == finished["ws"].reports(wsf.DAY) / REPORT_HTML
    page = finished["page"]
    assert set(SECTIONS) <= set(page.sections)
    for name in SECTIONS:
        assert MISSING not in page.sections[name], f"section {name} says its input is missing"
        assert "could not be drawn" not in page.sections[name], page.sections[name][:500]
    assert "Run succeeded" in page.sections["summary"]


def test_step_table_numbers_are_the_step_records(finished):
    rows = finished["page"].rows("steps-table")
    records = _step_records(finished["ws"])
    assert set(records) <= set(rows)
    for name, rec in records.items():
        status, wall, cpu, rss, result = rows[name]
        assert status == rec["status"]
        assert (wall, cpu, rss) == (f"{rec['wall_s']:.1f}", f"{rec['cpu_s']:.1f}", f"{rec['peak_rss_mb']:.1f}")
    assert rows["validate_data"][4] == "PASSED: 2 checks, 1 warnings"
    assert rows["build_samples"][4] == "rows: retrieval 71,814, negatives 21,200"
    assert rows["all steps (sum; max RSS)"][1] == f"{sum(r['wall_s'] for r in records.values()):.1f}"


def test_hostile_step_name_is_escaped(finished):
    text, page = finished["text"], finished["page"]
    assert wsf.HOSTILE_STEP in page.rows("steps-table"), "the name shows as text"
    assert "&lt;script&gt;alert(1)" in text
    assert "<script" not in text.lower() and "script" not in page.tags
    assert "timestamps &lt;outside&gt; the day &amp; its partition" not in text  # passed run: no failed check


def test_evaluation_tables_hold_every_system_metric_of_the_record(finished):
    page, report = finished["page"], finished["report"]
    summary = page.rows("eval-summary")
    header = page.tables["eval-summary"][0][1:]
    names = [n for n in SUMMARY_METRICS if any(k.startswith(n + "@") for k in report.system("model"))]
    assert header[: len(names)] == [f"{n}@100" for n in names] and header[-1] == "ann_recall@100"
    assert list(summary) == list(wsf.SYSTEMS)
    for system, metrics in report.systems.items():
        for col, key in enumerate(header):
            mv = metrics.get(key)
            assert summary[system][col] == (f"{mv.value:.4f} (n={mv.n_requests})" if mv else "–"), (system, key)
        per_k = page.rows("eval-click_recall")
        assert per_k[system] == [f"{metrics[f'click_recall@{k}'].value:.4f} (n=450)" for k in wsf.KS]
    rankers = page.rows("rankers")
    assert rankers["ndcg@10"] == ["0.8100 (n=480)", "0.7700 (n=480)", "0.7000 (n=480)"]
    assert rankers["cost_ms_per_1k"] == ["19.500", "2.500", "2.400"]


def test_gate_decision_shows_keep_with_every_reason_and_the_compared_values(finished):
    gate = finished["page"].sections["gate"]
    decision = finished["decision"]
    assert not decision.publish and "KEEP" in gate and "the champion keeps serving" in gate
    for reason in decision.reasons:
        assert reason in gate
    rows = finished["page"].rows("gate-inputs")
    gi = finished["gate_inputs"]
    for key in gi["keys"]:
        new, champ = gi["new"][key], gi["champion"][key]
        assert rows[key][:2] == [f"{new['value']:.4f} (n={new['n_requests']})",
                                 f"{champ['value']:.4f} (n={champ['n_requests']})"]
    assert "KEEP the champion" in finished["page"].sections["summary"]


def test_ann_sweep_table_is_the_index_manifest_curve(finished):
    manifest = finished["index"]
    curve = manifest["tuning"]["curve"]
    rows = finished["page"].tables["ann-sweep"][1:]
    assert len(rows) == len(curve) > 1
    for row, point in zip(rows, curve, strict=True):
        assert row[0] == ", ".join(f"{k}={v}" for k, v in point["params"].items())
        assert row[1] == f"{point['ann_recall']:.4f}"
    chosen = [r[0] for r in rows if r[-1] == "◀ chosen"]
    assert chosen == [", ".join(f"{k}={v}" for k, v in manifest["search_params"].items())]


def test_training_tables_are_the_histories(finished):
    section = finished["page"].sections["training"]
    assert "two-tower retrieval model" in section and "fine ranker (teacher)" in section
    assert "student_distilled" in section and "student_plain" in section
    for row in finished["two_tower"][1:]:
        assert f"{row['train_loss']:.4f}" in section


def test_figures_are_inline_pngs_and_nothing_points_outside_the_file(finished):
    page, html_dir = finished["page"], finished["html"].parent
    images = [v for tag, name, v in page.attrs if tag == "img"]
    assert len(images) == 1 + 1 + 3, "recall@K, the ANN sweep, three trainings"
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in finished["text"] and "https://" not in finished["text"]
    assert not {"script", "link", "iframe", "object"} & page.tags
    links = [v for tag, name, v in page.attrs if tag == "a"]
    assert links and all(v.startswith("#") or not v.startswith(("/", "file:")) and ":" not in v for v in links)
    docs = finished["validate_data"].parent / "data_docs" / "index.html"
    assert os.path.relpath(docs, html_dir) in links, "the Data Docs link is relative to the page"
    assert (html_dir / os.path.relpath(docs, html_dir)).resolve() == docs.resolve()


def test_report_is_written_by_the_run_report_and_a_failure_names_it(tmp_path, finished):
    from pipelines.local import PipelineFailed, _with_html_report, write_run_report

    ws = finished["ws"]
    (ws.reports(wsf.DAY) / REPORT_HTML).unlink()
    log = ws.reports(wsf.DAY) / "kfp.log"
    log.write_text("task log\n", encoding="utf-8")
    run_json = write_run_report(ws, wsf.DAY, 12.5, log)
    assert run_json.name == "run.json" and (run_json.parent / REPORT_HTML).is_file()
    page = Page((run_json.parent / REPORT_HTML).read_text(encoding="utf-8"))
    assert "12.5 s" in page.sections["summary"]

    failed = wsf.failed_run(tmp_path)
    err = _with_html_report(PipelineFailed("task validate-data failed\n  cause: ValidationFailed: bad day"),
                            failed["ws"], wsf.DAY)
    last = str(err).splitlines()[-1].strip()
    html = failed["ws"].reports(wsf.DAY) / REPORT_HTML
    assert last == f"report: {html}" and "ValidationFailed: bad day" in html.read_text(encoding="utf-8")


def test_failed_run_renders_the_failure_and_says_what_was_not_produced(tmp_path):
    made = wsf.failed_run(tmp_path)
    out = tmp_path / "elsewhere" / "run.html"
    path = write_html_report(made["ws"], wsf.DAY, out=out, failure="PipelineFailed: validate-data <failed>")
    assert path == out
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert "Run FAILED" in page.sections["summary"]
    assert "PipelineFailed: validate-data <failed>" in page.sections["summary"]
    assert "task validate-data failed" in page.sections["summary"], "the exit handler's error"
    assert page.rows("steps-table")["validate_data"][0] == "failed"
    assert "timestamps <outside> the day & its partition" in page.sections["validation"]
    assert "timestamps &lt;outside&gt; the day &amp; its partition" in text
    for name in ("evaluation", "recall", "index", "training", "gate"):
        assert MISSING in page.sections[name], name
    for name in SECTIONS:
        assert "could not be drawn" not in page.sections[name], page.sections[name][:500]
    report_md = made["validate_data"]
    assert os.path.relpath(report_md, out.parent) in [v for _, _, v in page.attrs], "relative from where it lies"


def test_records_left_by_an_earlier_run_are_marked(tmp_path):
    made = wsf.failed_run(tmp_path)
    ws = made["ws"]
    from ebr.bundle.release import keep_day

    keep_day(wsf.DAY, ws, "click_recall@100: new 0.5 vs champion 0.6: worse beyond tolerance")
    first = min(p.stat().st_mtime for p in (ws.reports(wsf.DAY) / "steps").glob("*.json"))
    os.utime(ws.reports(wsf.DAY) / "decision.json", (first - 3600, first - 3600))
    page = Page(write_html_report(ws, wsf.DAY).read_text(encoding="utf-8"))
    assert "KEEP" in page.sections["gate"] and "earlier run" in page.sections["gate"]


def _screenshot(binary: str, page: Path, png: Path, profile: Path) -> None:
    cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           f"--screenshot={png}", "--window-size=1280,2000", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"


def _ink(png: Path) -> tuple[float, int]:
    """(share of pixels that are not near-white, number of distinct colours) of a screenshot."""
    import matplotlib.image
    import numpy as np

    rgb = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(np.uint8)
    share = float((rgb.min(axis=2) < 235).mean())
    colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
    return share, colours


def test_headless_chromium_renders_the_report(tmp_path, finished):
    binary = shutil.which("chromium")
    if binary is None:
        print(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    shot = tmp_path / "report.png"
    _screenshot(binary, finished["html"], shot, tmp_path / "profile")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    _screenshot(binary, blank, tmp_path / "blank.png", tmp_path / "profile")
    share, colours = _ink(shot)
    blank_share, blank_colours = _ink(tmp_path / "blank.png")
    assert blank_share < 0.01 and blank_colours < 5, "the measure sees an empty page as empty"
    assert share > 0.05 and colours > 200, f"the report renders as a nearly blank page ({share:.3f}, {colours})"


def test_kfp_metrics_are_the_evaluation_records_key_numbers(finished, tmp_path):
    from ebr.report import KEY_METRICS, kfp_metrics
    from ebr.workspace import Workspace

    got = kfp_metrics(finished["ws"], wsf.DAY, publish=False)
    report = finished["report"]
    for system, metrics in report.systems.items():
        for key in KEY_METRICS:
            if key in metrics:
                assert got[f"{system}.{key}"] == pytest.approx(metrics[key].value, abs=1e-6)
    assert got["gate.publish"] == 0.0
    assert not any(k.startswith("nosuch") for k in got)
    assert kfp_metrics(Workspace.at(tmp_path / "empty"), wsf.DAY) == {}, "no evaluation yet: nothing to show"
