"""One test per loader rule: a deliberately broken partition, and the message that names the fault."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebr.contract import ContractError, check_dataset, load
from ebr.contract.schema import TABLES

from .conftest import D1, D2, write_dataset, write_table


def violations_of(root: Path):
    report = check_dataset(root)
    assert not report.ok
    return report.violations


def only(vs, rule):
    hits = [v for v in vs if v.rule == rule]
    assert hits, f"no {rule} violation among {[str(v) for v in vs]}"
    return hits[0]


def test_valid_dataset_loads_as_union_of_partitions(dataset):
    report = check_dataset(dataset)
    assert report.ok, report.render()
    imp = load(dataset, "impressions")
    assert len(imp) == 6 and sorted(imp["ds"].unique()) == [D1, D2]
    assert str(imp["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert load(dataset, "impressions", [D2])["request_id"].unique().tolist() == ["r3"]


def test_several_files_per_partition_are_unioned(dataset, rows):
    extra = dict(rows["search_requests"][D1][0], request_id="r9")
    pq.write_table(pa.Table.from_pylist([extra], schema=TABLES["search_requests"].schema),
                   dataset / "search_requests" / f"ds={D1}" / "other.parquet")
    assert set(load(dataset, "search_requests", [D1])["request_id"]) == {"r1", "r2", "r9"}


def test_missing_column_names_table_partition_and_column(dataset, rows):
    schema = TABLES["docs"].schema
    schema = schema.remove(schema.get_field_index("category_leaf"))
    fixed = [{k: v for k, v in r.items() if k != "category_leaf"} for r in rows["docs"][D2]]
    write_table(dataset, "docs", D2, fixed, schema)
    v = only(violations_of(dataset), "missing_column")
    assert (v.table, v.partition, v.column) == ("docs", D2, "category_leaf")
    assert "category_leaf" in str(v) and "docs" in str(v) and D2 in str(v)


def test_incompatible_type_is_reported(dataset, rows):
    schema = TABLES["search_requests"].schema
    schema = schema.set(schema.get_field_index("user_id"), pa.field("user_id", pa.string()))
    bad = [dict(r, user_id=str(r["user_id"])) for r in rows["search_requests"][D2]]
    write_table(dataset, "search_requests", D2, bad, schema)
    v = only(violations_of(dataset), "type")
    assert (v.table, v.partition, v.column) == ("search_requests", D2, "user_id")


def test_compatible_types_are_cast(dataset, rows):
    schema = TABLES["users"].schema
    schema = schema.set(schema.get_field_index("age"), pa.field("age", pa.int64()))
    write_table(dataset, "users", D1, rows["users"][D1], schema)
    assert str(load(dataset, "users")["age"].dtype) == "int32"


def test_null_ids_are_errors(dataset, rows):
    schema = TABLES["impressions"].schema
    schema = schema.set(schema.get_field_index("doc_id"), pa.field("doc_id", pa.int64(), nullable=True))
    bad = [dict(r, doc_id=None) if i == 0 else r for i, r in enumerate(rows["impressions"][D1])]
    write_table(dataset, "impressions", D1, bad, schema)
    v = only(violations_of(dataset), "not_null")
    assert (v.table, v.partition, v.column, v.bad_rows) == ("impressions", D1, "doc_id", 1)


def test_enum_out_of_range(dataset, rows):
    bad = [dict(r, stage="clicked") if r["doc_id"] == 3 else r for r in rows["impressions"][D1]]
    write_table(dataset, "impressions", D1, bad)
    v = only(violations_of(dataset), "enum")
    assert v.column == "stage" and v.examples[0]["stage"] == "clicked"


def test_position_set_iff_exposed(dataset, rows):
    bad = [dict(r, position=5) if r["stage"] == "preranked" else r for r in rows["impressions"][D1]]
    write_table(dataset, "impressions", D1, bad)
    v = only(violations_of(dataset), "position_iff_exposed")
    assert v.column == "position" and v.bad_rows == 1


def test_clicked_implies_exposed(dataset, rows):
    bad = [dict(r, clicked=True) if r["stage"] == "ranked" else r for r in rows["impressions"][D1]]
    write_table(dataset, "impressions", D1, bad)
    assert only(violations_of(dataset), "clicked_implies_exposed").column == "clicked"


def test_liked_implies_clicked(dataset, rows):
    bad = [dict(r, liked=True) if r["doc_id"] == 2 and r["request_id"] == "r1" else r
           for r in rows["impressions"][D1]]
    write_table(dataset, "impressions", D1, bad)
    v = only(violations_of(dataset), "liked_implies_clicked")
    assert v.column == "liked" and v.examples == [{"request_id": "r1", "doc_id": 2, "clicked": False, "liked": True}]


def test_impression_request_must_exist_same_or_previous_day(dataset, rows):
    # r1 is a D1 request: an impression of it on D2 is allowed (previous day)...
    ok = rows["impressions"][D2] + [dict(rows["impressions"][D1][1], event_timestamp=rows["impressions"][D2][0][
        "event_timestamp"])]
    write_table(dataset, "impressions", D2, ok)
    assert check_dataset(dataset).ok
    # ...but an unknown request is not.
    bad = ok + [dict(ok[0], request_id="nope")]
    write_table(dataset, "impressions", D2, bad)
    v = only(violations_of(dataset), "request_exists")
    assert (v.table, v.partition, v.column, v.bad_rows) == ("impressions", D2, "request_id", 1)


def test_impression_doc_must_exist_as_of_request_time(dataset, rows):
    # doc 4 is published on D2 at 05:00; an impression of it on D1 is before it existed.
    bad = rows["impressions"][D1] + [dict(rows["impressions"][D1][2], doc_id=4)]
    write_table(dataset, "impressions", D1, bad)
    assert only(violations_of(dataset), "doc_exists_as_of").column == "doc_id"
    bad = rows["impressions"][D1] + [dict(rows["impressions"][D1][2], doc_id=999)]
    write_table(dataset, "impressions", D1, bad)
    assert only(violations_of(dataset), "doc_exists").bad_rows == 1


def test_duplicate_request_ids(dataset, rows):
    write_table(dataset, "search_requests", D1, rows["search_requests"][D1] + rows["search_requests"][D1][:1])
    v = only(violations_of(dataset), "duplicate_key")
    assert v.table == "search_requests" and v.bad_rows == 2


def test_duplicate_impression_keys(dataset, rows):
    write_table(dataset, "impressions", D2, rows["impressions"][D2] + rows["impressions"][D2][:1])
    v = only(violations_of(dataset), "duplicate_key")
    assert (v.table, v.column) == ("impressions", "request_id,doc_id")


def test_timestamp_outside_its_day(dataset, rows):
    late = [dict(r, event_timestamp=r["event_timestamp"] + timedelta(days=1)) for r in rows["user_events"][D1]]
    write_table(dataset, "user_events", D1, late)
    v = only(violations_of(dataset), "timestamp_in_day")
    assert (v.table, v.partition, v.column) == ("user_events", D1, "event_timestamp")


def test_label_must_be_0_1_2(dataset, rows):
    write_table(dataset, "relevance_labels", D1, [dict(rows["relevance_labels"][D1][0], label=3)])
    assert only(violations_of(dataset), "enum").column == "label"


def test_extra_columns_are_ignored_and_reported(dataset, rows):
    schema = TABLES["authors"].schema.append(pa.field("shop_level", pa.int32()))
    write_table(dataset, "authors", D1, [dict(r, shop_level=3) for r in rows["authors"][D1]], schema)
    report = check_dataset(dataset)
    assert report.ok
    assert report.tables["authors"].extra_columns == ["shop_level"]
    assert "shop_level" not in load(dataset, "authors").columns


def test_examples_are_capped_at_five(dataset, rows):
    many = [dict(rows["user_events"][D1][0], event_type="share") for _ in range(9)]
    write_table(dataset, "user_events", D1, many)
    v = only(violations_of(dataset), "enum")
    assert v.bad_rows == 9 and len(v.examples) == 5


def test_load_raises_with_every_violation_and_writes_nothing(dataset, rows):
    bad = [dict(r, stage="clicked", clicked=True) for r in rows["impressions"][D1]]
    write_table(dataset, "impressions", D1, bad)

    def snapshot() -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in dataset.rglob("*") if p.is_file()}

    before = snapshot()
    with pytest.raises(ContractError) as err:
        load(dataset, "impressions")
    assert {v.rule for v in err.value.violations} >= {"enum", "clicked_implies_exposed"}
    assert "impressions ds=2026-03-01 column 'stage'" in str(err.value)
    assert snapshot() == before


def test_missing_partition_and_bad_folder(dataset):
    with pytest.raises(ContractError, match="ds=2026-03-05 is missing"):
        load(dataset, "search_requests", ["2026-03-05"])
    (dataset / "docs" / "day=1").mkdir()
    assert only(violations_of(dataset), "partition").table == "docs"


def test_missing_required_table(tmp_path, rows):
    write_dataset(tmp_path, {k: v for k, v in rows.items() if k != "user_events"})
    v = only(violations_of(tmp_path), "missing_table")
    assert v.table == "user_events"


def test_optional_labels_table_may_be_absent(tmp_path, rows):
    write_dataset(tmp_path, {k: v for k, v in rows.items() if k != "relevance_labels"})
    assert check_dataset(tmp_path).ok
