"""The champion miner encodes requests with the inputs training encodes them with: the rows `build_samples` hands
it (each request with its point-in-time query-side features) give the training-time query vectors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from ebr.bundle import champion_miner
from ebr.bundle.layout import QUERY_TOWER_EXPORT, write_current
from ebr.models.export import export_two_tower
from ebr.models.two_tower import TwoTowerModel
from ebr.samples.build import mining_requests
from tests.train.synthetic import small_config, training_data


def _bundle(tmp_path, model: TwoTowerModel, data) -> object:
    """A published version holding the part the miner reads: the exported towers (no index is searched here)."""
    idx = np.arange(4)
    version = tmp_path / "bundles" / "v1"
    export_two_tower(model, version / QUERY_TOWER_EXPORT, query_inputs=data.train.query_tensors(idx),
                     doc_inputs=data.train.doc_tensors(idx), model_version="v1")
    (version / "manifest.json").write_text(json.dumps({"version": "v1"}), encoding="utf-8")
    write_current(tmp_path / "bundles", "v1")
    return tmp_path / "bundles"


def test_mined_requests_are_encoded_like_training(tmp_path):
    torch.manual_seed(0)
    cfg = small_config()
    assert cfg.model.query_tower.personalization
    data = training_data(cfg, n_rows=12, rows_per_request=2, mined=[0])
    model = TwoTowerModel(cfg.model).eval()
    bundles = _bundle(tmp_path, model, data)
    index_dir, encode = champion_miner(bundles)
    assert index_dir == bundles / "v1" / "index"

    frame = data.train.frame  # the joined retrieval rows the trainer featurized
    first = frame.drop_duplicates("request_id").index.to_numpy()
    with torch.no_grad():
        trained = model.encode_queries(data.train.query_tensors(first)).numpy()

    # what build_samples gives the miner: the window's requests, with the features of each one's first click row
    requests = frame.loc[first, ["request_id", "user_id", "query", "event_timestamp"]].reset_index(drop=True)
    retrieval = frame[["request_id", "user_id", "query", "doc_id", "author_id", "event_timestamp", "weight", "kind"]]
    rows, note = mining_requests(requests, retrieval, frame, None)
    assert note is None and {"user_gender", "seq_rt_doc_ids", "recent_queries"} <= set(rows.columns)
    mined = encode(rows)
    np.testing.assert_allclose(mined, trained, atol=1e-5)

    # the text-only rows of before encode to other vectors: the user features matter to this tower
    text_only = encode(pd.DataFrame({"query": requests["query"], "user_id": requests["user_id"]}))
    assert np.abs(text_only - trained).max() > 1e-3


def test_without_a_feature_store_the_miner_is_told_what_is_missing():
    cfg = small_config()
    data = training_data(cfg, n_rows=4, rows_per_request=2, mined=[0])
    frame = data.train.frame
    requests = frame.drop_duplicates("request_id")[["request_id", "user_id", "query"]].reset_index(drop=True)
    rows, note = mining_requests(requests, frame[["request_id", "query", "doc_id", "kind"]], None, None)
    assert rows is requests and "query text and user id only" in note
