"""Reuse of traced export graphs: a re-export of the same architecture binds the new weights to the traced graph
(from this process or from the disk cache) and answers like the new model; another architecture, other input
shapes or an entry that disagrees with the module are traced afresh."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from ebr.models import export_cache
from ebr.models.export import export_modules, load_exported
from ebr.models.inputs import featurize_queries
from ebr.models.two_tower import TwoTowerModel
from tests.models.rows import logged_in_row, logged_out_row, small_config


class _Scorer(nn.Module):
    """A small dict-input module with a flag that changes the computation but no parameter."""

    def __init__(self, dim: int = 8, squash: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, 4)
        self.squash = squash
        self.register_buffer("shift", torch.zeros(4), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self.layer(inputs["x"]) + self.shift
        return torch.tanh(y) if self.squash else y


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A fresh in-process memo and disk cache per test; one torch thread."""
    monkeypatch.setattr(export_cache, "_memo", {})
    monkeypatch.setattr(export_cache, "_stats", dict.fromkeys(export_cache._stats, 0))
    monkeypatch.setenv(export_cache.CACHE_ENV, str(tmp_path / "graphs"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _scorer(seed: int, **kw) -> _Scorer:
    torch.manual_seed(seed)
    m = _Scorer(**kw)
    m.shift.fill_(float(seed))
    return m.eval()  # as export_modules keys it


def _export(tmp_path, name: str, module: nn.Module, inputs: dict[str, torch.Tensor]):
    out = export_modules(tmp_path / name, {"m": module}, {"m": inputs}, model_version=name)
    return load_exported(out)["m"]


def test_query_tower_reexport_binds_the_new_weights_to_the_traced_graph(tmp_path):
    cfg = small_config()
    rows = featurize_queries([logged_in_row(), logged_out_row()], cfg.featurizer)
    towers = []
    for seed in (1, 2):
        tower = TwoTowerModel(cfg).query_tower.eval()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # two trainings' weights: the same architecture, other values
            for p in tower.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        towers.append(tower)
    first = _export(tmp_path, "a", towers[0], rows)
    second = _export(tmp_path, "b", towers[1], rows)
    assert export_cache.stats() == {"traced": 1, "reused_memory": 1, "reused_disk": 0, "rejected": 0}
    (entry,) = (tmp_path / "graphs").glob("*.pt2")
    program = tmp_path / "a" / "m.pt2"
    weights = sum(t.numel() * t.element_size() for t in towers[0].state_dict().values())
    assert entry.stat().st_size < program.stat().st_size - weights * 0.9, "the cache keeps the graph, not weights"
    other = featurize_queries([logged_out_row(), logged_in_row(), logged_in_row()], cfg.featurizer)
    with torch.no_grad():
        want = [t(other) for t in towers]
    assert not torch.allclose(want[0], want[1])
    torch.testing.assert_close(first(other), want[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(second(other), want[1], rtol=0, atol=1e-5)


def test_another_process_reuses_the_graph_from_the_disk_cache(tmp_path, monkeypatch):
    x = {"x": torch.randn(3, 8)}
    _export(tmp_path, "a", _scorer(1), x)
    assert len(list((tmp_path / "graphs").glob("*.pt2"))) == 1
    monkeypatch.setattr(export_cache, "_memo", {})  # as a new step process starts
    m = _scorer(2)
    got = _export(tmp_path, "b", m, x)
    assert export_cache.stats()["reused_disk"] == 1 and export_cache.stats()["traced"] == 1
    y = {"x": torch.randn(5, 8)}
    torch.testing.assert_close(got(y), m(y).detach(), rtol=0, atol=1e-6)  # weights and the non-persistent buffer


def test_a_flag_or_other_input_shapes_are_another_graph(tmp_path):
    x = {"x": torch.randn(3, 8)}
    _export(tmp_path, "plain", _scorer(1), x)
    squashed = _scorer(1, squash=True)
    got = _export(tmp_path, "squash", squashed, x)
    wider = _scorer(1, dim=6)
    _export(tmp_path, "wider", wider, {"x": torch.randn(3, 6)})
    assert export_cache.stats()["traced"] == 3 and export_cache.stats()["reused_memory"] == 0
    assert export_cache.graph_key(squashed, x) != export_cache.graph_key(_scorer(1), x)
    assert float(got(x).abs().max()) <= 1.0  # the tanh branch was traced


def test_an_entry_that_disagrees_with_the_module_is_traced_afresh(tmp_path, monkeypatch):
    x = {"x": torch.randn(3, 8)}
    _export(tmp_path, "plain", _scorer(1), x)
    _export(tmp_path, "squash", _scorer(1, squash=True), x)
    plain_key = export_cache.graph_key(_scorer(1), x)
    squash_key = export_cache.graph_key(_scorer(1, squash=True), x)
    graphs = tmp_path / "graphs"
    # a stale entry: the plain graph filed under the squashing module's key (as after an edit the key missed)
    shutil.copyfile(graphs / f"{plain_key}.pt2", graphs / f"{squash_key}.pt2")
    monkeypatch.setattr(export_cache, "_memo", {})
    m = _scorer(3, squash=True)
    got = _export(tmp_path, "again", m, x)
    assert export_cache.stats()["rejected"] == 1 and export_cache.stats()["traced"] == 3
    torch.testing.assert_close(got(x), m(x).detach(), rtol=0, atol=1e-6)
    # an unreadable entry is a miss too
    (graphs / f"{plain_key}.pt2").write_bytes(b"not a program")
    monkeypatch.setattr(export_cache, "_memo", {})
    m = _scorer(4)
    torch.testing.assert_close(_export(tmp_path, "broken", m, x)(x), m(x).detach(), rtol=0, atol=1e-6)
    assert export_cache.stats()["traced"] == 4


def test_without_a_cache_directory_only_the_process_reuses(tmp_path, monkeypatch):
    monkeypatch.delenv(export_cache.CACHE_ENV)
    x = {"x": torch.randn(3, 8)}
    _export(tmp_path, "a", _scorer(1), x)
    _export(tmp_path, "b", _scorer(2), x)
    assert export_cache.stats()["reused_memory"] == 1
    assert not (tmp_path / "graphs").exists()
