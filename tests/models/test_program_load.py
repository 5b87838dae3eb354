"""load_program: the same program `torch.export.load` gives, with the deserializer's type-hint lookups remembered."""

from __future__ import annotations

import dataclasses
import typing

import torch
from torch import nn
from torch._export.serde import schema, serialize

from ebr.models.program_load import load_program, remember_schema_type_hints


class _Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(50, 8, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.mlp(self.emb(ids)), dim=-1)


def test_loads_the_program_torch_loads_and_answers_alike(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (6, 5))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(_Tower().eval(), (ids,), dynamic_shapes=({0: batch},))
    path = tmp_path / "tower.pt2"
    torch.export.save(program, str(path))
    with monkeypatch.context() as m:  # torch's own loader, with the real typing module
        m.setattr(serialize, "typing", typing)
        reference = torch.export.load(str(path))
    fast = load_program(path)
    assert not isinstance(serialize.typing, type(typing))  # the remembering stand-in is in place
    assert str(fast.graph) == str(reference.graph)
    assert fast.state_dict.keys() == reference.state_dict.keys()
    assert all(torch.equal(fast.state_dict[k], reference.state_dict[k]) for k in fast.state_dict)
    other = torch.randint(0, 50, (3, 5))  # another batch size: the dynamic dimension survived
    torch.testing.assert_close(fast.module()(other), reference.module()(other), rtol=0, atol=0)
    assert load_program(path).graph is not fast.graph  # a new program each load, nothing shared


def test_remembered_hints_equal_typings_and_callers_get_their_own_copy():
    remember_schema_type_hints()
    remember_schema_type_hints()  # once a process: the stand-in is not wrapped again
    stand_in = serialize.typing
    assert stand_in.get_origin is typing.get_origin and stand_in.Union is typing.Union
    classes = [c for c in vars(schema).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]
    assert len(classes) > 20
    for cls in classes:
        want = typing.get_type_hints(cls, globalns=vars(schema))
        assert stand_in.get_type_hints(cls, globalns=vars(schema)) == want
        got = stand_in.get_type_hints(cls, globalns=vars(schema))
        got["changed_by_a_caller"] = int
        assert stand_in.get_type_hints(cls, globalns=vars(schema)) == want
