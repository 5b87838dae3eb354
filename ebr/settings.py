"""Typed configuration: pydantic sections, loadable from YAML and overridable with `a.b=value` strings.

Every step takes one section of `EbrConfig` (see ebr/config.py). Defaults come from the seeds and are
documented on each field; `--config FILE` and `--set section.field=value` override them on the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ConfigError(ValueError):
    """A config file or override that does not fit the typed config; names the field."""


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split `section.field=value`; the value is parsed as YAML so numbers, lists and bools keep their type."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from e
    return key, value


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None, section: str | None = None
) -> T:
    """Build `cls` from defaults, then a YAML file (if given), then dotted overrides, validating all of it.

    With `section`, the file holds a whole run config and `cls` is built from its `section:` mapping alone (none
    there = defaults); overrides are relative to that section."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        tree = loaded
        if section is not None:
            tree = loaded.get(section) or {}
            if not isinstance(tree, dict):
                raise ConfigError(f"config file {p}: {section!r} must be a mapping")
    for o in overrides or []:
        key, value = parse_override(o)
        _set_dotted(tree, key, value)
    try:
        return cls.model_validate(tree)
    except ValidationError as e:
        msgs = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration: " + "; ".join(msgs)) from e


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config, the same shape load_config reads."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
