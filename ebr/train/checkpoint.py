"""A trained two-tower model directory: `checkpoint.pt` (weights of the best epoch) and `model_config.json`,
loading it back, and warm-starting a new model from a previous one (the champion)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebr.models.config import TwoTowerConfig
from ebr.train.tracking import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ebr.models.two_tower import TwoTowerModel

CHECKPOINT = "checkpoint.pt"
MODEL_CONFIG = "model_config.json"


def save_two_tower(model: TwoTowerModel, out_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """checkpoint.pt ({"model": state dict, **extra}) and model_config.json into `out_dir`."""
    save_checkpoint(out_dir / CHECKPOINT, {"model": model.state_dict(), **(extra or {})})
    (out_dir / MODEL_CONFIG).write_text(model.config.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_model_config(model_dir: str | Path) -> TwoTowerConfig:
    """The TwoTowerConfig a model directory was trained with."""
    path = Path(model_dir) / MODEL_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a two-tower model directory: {MODEL_CONFIG} is missing")
    return TwoTowerConfig.model_validate_json(path.read_text(encoding="utf-8"))


def load_two_tower(model_dir: str | Path) -> TwoTowerModel:
    """The eager model of a model directory, in eval mode."""
    from ebr.models.two_tower import TwoTowerModel

    model = TwoTowerModel(read_model_config(model_dir))
    model.load_state_dict(load_checkpoint(Path(model_dir) / CHECKPOINT)["model"])
    return model.eval()


def warm_start(model: TwoTowerModel, model_dir: str | Path) -> dict[str, Any]:
    """Copy every parameter and buffer of the previous model whose name and shape match into `model`.

    Returns what was loaded and skipped; an error when nothing matches (a different architecture)."""
    import torch

    previous = load_checkpoint(Path(model_dir) / CHECKPOINT)["model"]
    own = model.state_dict()
    loaded = [k for k, v in previous.items() if k in own and tuple(own[k].shape) == tuple(v.shape)]
    mismatched = sorted(k for k, v in previous.items() if k in own and tuple(own[k].shape) != tuple(v.shape))
    new = sorted(k for k in own if k not in previous)
    if not loaded:
        raise ValueError(f"warm start from {model_dir}: no parameter matches the model by name and shape")
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(previous[k])
    return {"from": str(model_dir), "loaded": len(loaded), "shape_mismatch": mismatched, "not_in_previous": new}
