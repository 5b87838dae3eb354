"""`ebr check-data` and `ebr summarize` on good and broken data (real CLI entry point)."""

from __future__ import annotations

from ebr.cli import main
from ebr.contract.schema import TABLES

from .conftest import D2, write_table


def test_check_data_ok(dataset, capsys):
    assert main(["check-data", "--data", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "impressions" in out and out.strip().endswith("OK")


def test_check_data_fails_naming_table_partition_column(dataset, rows, capsys):
    schema = TABLES["search_requests"].schema
    schema = schema.remove(schema.get_field_index("query"))
    write_table(dataset, "search_requests", D2, [{k: v for k, v in r.items() if k != "query"}
                                                  for r in rows["search_requests"][D2]], schema)
    assert main(["check-data", "--data", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert f"search_requests ds={D2} column 'query'" in out and "FAILED" in out


def test_check_data_single_day(dataset, capsys):
    assert main(["check-data", "--data", str(dataset), "--day", D2]) == 0
    out = capsys.readouterr().out
    assert "2026-03-01..2026-03-02" in out  # docs need every change row up to the day


def test_summarize_prints_example_requests(dataset, capsys):
    assert main(["summarize", "--data", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "query='红色连衣裙'" in out and "* #1" in out


def test_bad_day_argument_is_a_clear_error(dataset, capsys):
    assert main(["check-data", "--data", str(dataset), "--day", "2026-13-01"]) == 2
    assert "2026-13-01" in capsys.readouterr().err
