"""`ebr ablate`: the quick ablation on the tiny data writes every requested row with finite statistics, the same
seed gives the same numbers, bad rows and overrides are named, and the results section is rewritten in place."""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import pytest

from ebr.ablate.report import BEGIN, END, build_document, compare, render_section, replace_section, verdict
from ebr.ablate.rows import BASELINE, METRICS, ROWS, AblationRow, select_rows
from ebr.ablate.runner import base_config, config_tree, row_config, run_ablation
from ebr.settings import ConfigError

QUICK_ROWS = ["baseline", "i_mix_off", "hard_negatives_none"]


@pytest.fixture(scope="module")
def quick(tiny_data, tmp_path_factory):
    """One quick ablation: baseline and I_mix off trained over seeds 0 and 1, plus a hard-negative row that the
    workspace (no champion) cannot run."""
    work = tmp_path_factory.mktemp("ablate")
    log = io.StringIO()
    doc = run_ablation(tiny_data, "latest", work / "ws", QUICK_ROWS, [0, 1], work / "out", quick=True, progress=log)
    return doc, work, log.getvalue()


@pytest.mark.slow
def test_quick_run_writes_every_requested_row_with_finite_statistics(quick):
    doc, work, log = quick
    on_disk = json.loads((work / "out" / "ablations.json").read_text())
    assert on_disk["rows"] == doc["rows"] and on_disk["seeds"] == [0, 1] and on_disk["quick"] is True
    assert [r["name"] for r in doc["rows"]] == QUICK_ROWS
    ran = {r["name"]: r for r in doc["rows"] if r["status"] == "ok"}
    assert set(ran) == {"baseline", "i_mix_off"}
    for row in ran.values():
        assert [run["seed"] for run in row["runs"]] == [0, 1]
        for run in row["runs"]:  # the trainer's validation recall of the kept epoch, beside the day's metrics
            assert 0.0 < run["valid_click_recall"] <= 1.0 and run["valid_k"] > 0, run
            # no champion, no hard negatives: no easy:hard ratio, no slot filled
            assert run["effective_easy_hard_ratio"] is None and run["hard_slots_filled"] == 0.0, run
        for metric in METRICS:
            stat = row["metrics"][metric]
            assert stat["n"] == 2 and math.isfinite(stat["mean"]) and math.isfinite(stat["sd"]), (row["name"], metric)
            assert 0.0 <= stat["mean"] <= 1.0
    assert ran["i_mix_off"]["metrics"]["p_good@100"]["delta"] == pytest.approx(
        ran["i_mix_off"]["metrics"]["p_good@100"]["mean"] - ran["baseline"]["metrics"]["p_good@100"]["mean"])
    assert ran["i_mix_off"]["reproduced"] in {"yes", "no", "inconclusive"}
    skipped = next(r for r in doc["rows"] if r["name"] == "hard_negatives_none")
    assert skipped["status"] == "not run" and "champion" in skipped["reason"] and skipped["reproduced"] == "not run"
    assert doc["baseline_has_hard_negatives"] is False
    # the markdown holds every row, the regenerating command and the claims, between the markers
    md = (work / "out" / "ablations.md").read_text()
    assert md.count(BEGIN) == 1 and md.count(END) == 1
    for name in QUICK_ROWS:
        assert f"| `{name}` |" in md
    assert "ebr ablate --data" in md and "--quick" in md and "seed 001 (Taobao MGDSPR)" in md
    # progress: one line per row and seed
    assert "baseline seed 0 (1/4)" in log and "i_mix_off seed 1 (4/4)" in log


@pytest.mark.slow
def test_the_same_seed_gives_the_same_numbers_and_preparation_is_reused(quick, tiny_data):
    doc, work, _ = quick
    again = run_ablation(tiny_data, "latest", work / "ws", ["baseline"], [0], work / "again", quick=True,
                         progress=None)
    first = next(r for r in doc["rows"] if r["name"] == BASELINE)["runs"][0]
    second = again["rows"][0]["runs"][0]
    assert second["seed"] == first["seed"] == 0
    assert second["metrics"] == first["metrics"]
    assert second["final_train_loss"] == first["final_train_loss"]
    assert again["features"]["reused"] is True
    assert all(s["reused"] for s in again["samples"].values())
    other = next(r for r in doc["rows"] if r["name"] == BASELINE)["runs"][1]
    assert other["final_train_loss"] != first["final_train_loss"]  # the seed does change the run


def test_an_unknown_row_is_named_before_anything_is_built(tmp_path):
    with pytest.raises(ValueError, match="no_such_row"):
        run_ablation(tmp_path / "missing-data", "latest", tmp_path / "ws", ["baseline", "no_such_row"], [0],
                     tmp_path / "out", quick=True, progress=None)
    assert not (tmp_path / "ws").exists()


def test_a_bad_override_names_the_row_and_the_field():
    base = base_config(None, quick=True)
    bad_value = AblationRow("broken_loss", ("two_tower.loss.kind=hinge",), "a loss that does not exist")
    with pytest.raises(ConfigError, match=r"broken_loss.*two_tower\.loss\.kind"):
        row_config(base, bad_value, 0)
    not_a_section = AblationRow("broken_path", ("two_tower.train.epochs.max=2",), "a field that is not a section")
    with pytest.raises(ConfigError, match="broken_path.*'epochs' is not a section"):
        row_config(base, not_a_section, 0)
    with pytest.raises(ConfigError, match="broken_form"):
        row_config(base, AblationRow("broken_form", ("two_tower.loss.kind",), "no value"), 0)


def test_every_row_validates_and_changes_the_config_it_claims_to():
    base = base_config(None, quick=False)
    reference = config_tree(row_config(base, select_rows([BASELINE])[0], 0))
    for row in ROWS:
        tree = config_tree(row_config(base, row, 0))
        if row.name == BASELINE:
            assert tree == reference
            continue
        assert tree != reference, row.name
        assert row.claim is not None and row.claim.metric in METRICS, row.name
    seeded = row_config(base, ROWS[0], 7)
    assert seeded.two_tower.model.seed == 7 and seeded.two_tower.train.seed == 7
    assert 10 in base.evaluation.evaluate.ks and 100 in base.evaluation.evaluate.ks


def test_quick_sizes_yield_to_the_values_the_caller_sets():
    from ebr.config import load_ebr_config

    quick = base_config(load_ebr_config(None, ["two_tower.train.batch_size=32", "two_tower.model.temperature=0.1"]),
                        quick=True)
    assert quick.two_tower.train.batch_size == 32 and quick.two_tower.model.temperature == 0.1  # the caller's
    assert quick.two_tower.model.query_tower.hidden_dim == 16 and quick.two_tower.train.epochs == 1  # quick sizes
    full = base_config(load_ebr_config(None, ["two_tower.train.batch_size=32"]), quick=False)
    assert full.two_tower.train.batch_size == 32 and full.two_tower.model.query_tower.hidden_dim == 64
    assert not full.two_tower.train.progress


def test_rows_are_selected_baseline_first():
    assert [r.name for r in select_rows(["i_mix_off"])] == ["baseline", "i_mix_off"]
    assert [r.name for r in select_rows(["nce", "baseline", "nce"])] == ["baseline", "nce"]
    assert len(select_rows(None)) == len(ROWS)
    # a block of the personalized tower brings its reference row, before it
    assert [r.name for r in select_rows(["senet_off", "nce"])] == ["baseline", "personalization_on", "senet_off",
                                                                   "nce"]


def test_a_row_with_a_reference_is_compared_with_it_not_with_the_baseline():
    rows = select_rows(["senet_off"])
    metrics = {"baseline": 0.50, "personalization_on": 0.60, "senet_off": 0.58}
    results = {name: {"status": "ok", "runs": [{"seed": s, "metrics": {m: v + 0.001 * s for m in METRICS}}
                                               for s in range(3)]} for name, v in metrics.items()}
    doc = build_document(rows, results, {}, {})
    by = {r["name"]: r for r in doc["rows"]}
    assert by["senet_off"]["reference"] == "personalization_on"
    assert by["senet_off"]["metrics"]["click_recall@100"]["delta"] == pytest.approx(-0.02)
    assert by["senet_off"]["reproduced"] == "yes"  # down against the personalized tower, up against the baseline
    assert by["personalization_on"]["metrics"]["click_recall@100"]["delta"] == pytest.approx(0.10)
    md = render_section({**doc, "day": "d", "data_root": "r", "n_requests": 1, "corpus_docs": 1, "seeds": [0, 1, 2],
                         "command": "ebr ablate"})
    assert "| `senet_off` (vs `personalization_on`) | 0.5810 ± 0.0010 (-0.0200*)" in md
    assert "| `personalization_on` | 0.6010 ± 0.0010 (+0.1000*)" in md


def test_verdicts_follow_direction_and_significance():
    base = {"mean": 0.50, "sd": 0.01}
    down = compare({"mean": 0.40, "sd": 0.01}, base)
    assert down["significant"] is True and down["delta"] == pytest.approx(-0.10)
    assert verdict("down", down) == "yes" and verdict("up", down) == "no" and verdict("not_up", down) == "yes"
    small = compare({"mean": 0.51, "sd": 0.02}, base)
    assert small["significant"] is False
    assert verdict("up", small) == "inconclusive" and verdict("not_up", small) == "yes"
    assert verdict("not_up", compare({"mean": 0.60, "sd": 0.01}, base)) == "no"
    one_seed = compare({"mean": 0.40, "sd": None}, {"mean": 0.50, "sd": None})
    assert one_seed["significant"] is None and verdict("down", one_seed) == "inconclusive"


def test_a_rerun_rewrites_only_the_marked_section():
    page = replace_section(None, "first results")
    assert page.startswith("# Ablations") and "first results" in page
    handwritten = "# Ablations\n\nHow to run.\n\n" + page.split("## Results\n\n", 1)[1] + "\n## After\n\nKept.\n"
    rewritten = replace_section(handwritten, "second results")
    assert "second results" in rewritten and "first results" not in rewritten
    assert rewritten.startswith("# Ablations\n\nHow to run.\n\n") and rewritten.endswith("\n## After\n\nKept.\n")
    assert rewritten.count(BEGIN) == 1 and rewritten.count(END) == 1
    appended = replace_section("# Page without markers\n", "results")
    assert appended.startswith("# Page without markers") and appended.count(BEGIN) == 1


def test_the_command_line_parses_and_records_the_regenerating_command(tmp_path):
    from ebr.ablate.cli import regenerate_command, register

    parser = argparse.ArgumentParser(prog="ebr")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ablate", "--data", "d", "--workspace", "w", "--rows", "tau_2", "--seeds", "3", "4",
                              "--set", "two_tower.train.epochs=2"])
    assert args.day == "latest" and args.seeds == [3, 4] and args.rows == ["tau_2"] and not args.quick
    assert regenerate_command(args, Path("docs")) == (
        "ebr ablate --data d --day latest --workspace w --rows tau_2 --seeds 3 4 --out docs "
        "--set two_tower.train.epochs=2")
    with pytest.raises(SystemExit):
        parser.parse_args(["ablate", "--data", "d", "--workspace", "w", "--seeds", "-1"])


def test_the_doc_describes_every_row_and_has_one_results_section():
    page = (Path(__file__).resolve().parents[2] / "docs" / "ablations.md").read_text(encoding="utf-8")
    assert page.count(BEGIN) == 1 and page.count(END) == 1 and page.index(BEGIN) < page.index(END)
    for row in ROWS:
        assert f"| `{row.name}` |" in page, row.name
        if row.reference != BASELINE:
            line = page[page.index(f"| `{row.name}` |"):].split("\n", 1)[0]
            assert f"(vs `{row.reference}`)" in line, row.name
        for override in row.overrides:
            assert f"`{override}`" in page, (row.name, override)


def test_cached_samples_are_found_by_their_config_not_by_their_folder_name(tmp_path):
    from ebr.ablate.runner import ABLATE_DIR, SAMPLES_MANIFEST, find_samples, samples_key
    from ebr.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws")
    cfg = base_config(None, False)
    day = "2026-11-08"

    def cache(folder: str, config: dict) -> Path:
        d = ws.root / ABLATE_DIR / day / "samples" / folder
        d.mkdir(parents=True)
        manifest = {"day": day, "tables": {"retrieval": {"rows": 5}, "hard_negatives": {"rows": 0}}, "config": config}
        (d / SAMPLES_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        return d

    key = samples_key(cfg)
    assert find_samples(ws, day, key) is None
    older = cfg.samples.model_dump(mode="json")
    older["positives"].pop("relevance_filter")  # written before the field existed: it reads as its default now
    found = cache("0ldkey000000", older)
    assert find_samples(ws, day, key) == found
    assert find_samples(ws, day, key, need_hard=True) is None  # no hard negatives in it
    other = row_config(cfg, next(r for r in ROWS if r.name == "relevance_positives_on"), 0)
    assert find_samples(ws, day, samples_key(other)) is None
    assert find_samples(ws, "2026-11-09", key) is None
