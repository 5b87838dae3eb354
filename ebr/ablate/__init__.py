"""Ablations of the two-tower retrieval model: one technique changed at a time, over several seeds, each row
checked against the claim of the seed article it comes from (docs/ablations.md).

`run_ablation` (ebr.ablate.runner) loads on first use, so that the `ebr ablate` command line stays light."""

from typing import Any

from ebr.ablate.rows import ROWS, AblationRow, Claim, select_rows

__all__ = ["ROWS", "AblationRow", "Claim", "run_ablation", "select_rows"]


def __getattr__(name: str) -> Any:
    if name == "run_ablation":
        from ebr.ablate.runner import run_ablation

        return run_ablation
    raise AttributeError(f"module 'ebr.ablate' has no attribute {name!r}")
