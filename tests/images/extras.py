"""The install of one role of pyproject.toml (the core plus some extras) measured against this interpreter's
installed distributions: which distributions that install pulls, and which importable top-level modules come
only from distributions it does not pull (those a host with that install cannot import)."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Top-level packages of this repository outside `ebr`: shipped next to it (an image copies the ones it needs).
OWN_PACKAGES = frozenset({"ebr", "serving", "pipelines", "components"})


def canonical(name: str) -> str:
    """A distribution name in its normalized form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(extras: set[str]) -> list[Requirement]:
    """The core dependencies plus those of `extras`, following the project's references to its own extras
    (`ebr[serve,pipeline]` inside `dev`)."""
    own = canonical(PROJECT["name"])
    optional = PROJECT.get("optional-dependencies", {})
    wanted, seen, out = list(extras), set(), [Requirement(r) for r in PROJECT["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise KeyError(f"pyproject.toml has no extra {extra!r}")
        seen.add(extra)
        for line in optional[extra]:
            req = Requirement(line)
            if canonical(req.name) == own:
                wanted.extend(req.extras)
            else:
                out.append(req)
    return out


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the installed distributions that `requirements` pull, transitively (markers evaluated
    for this interpreter, with the extras each requirement names). A requirement that is not installed fails."""
    closure: set[str] = set()
    todo = [(r, frozenset()) for r in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = canonical(req.name)
        key = (name, frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        dist = md.distribution(req.name)  # PackageNotFoundError: the install under test lacks it
        closure.add(name)
        for line in dist.requires or []:
            todo.append((Requirement(line), frozenset(req.extras)))
    return closure


def modules_outside(closure: set[str]) -> set[str]:
    """Importable top-level modules that only distributions outside `closure` provide (the project's own
    packages and the standard library excluded)."""
    inside, outside = set(), set()
    for module, dists in md.packages_distributions().items():
        if module in sys.stdlib_module_names or module in OWN_PACKAGES or not module.isidentifier():
            continue
        (inside if any(canonical(d) in closure for d in dists) else outside).add(module)
    return outside - inside
