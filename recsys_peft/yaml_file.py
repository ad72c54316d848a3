"""Read YAML files with a safe loader, reporting syntax errors with the file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, where: str, error: type[ValueError] = ValueError) -> object:
    """Parse ``path``; an empty file gives ``{}``. Errors are ``error`` and start with ``where``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as problem:
        mark = problem.problem_mark or problem.context_mark
        position = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        reason = problem.problem or problem.context or "syntax error"
        raise error(f"{where}: invalid YAML{position}: {reason}") from None
    except yaml.YAMLError as problem:
        raise error(f"{where}: invalid YAML: {problem}") from None


def read_yaml_mapping(path: Path, where: str, error: type[ValueError] = ValueError) -> dict[str, Any]:
    """Parse ``path`` like ``read_yaml``, and raise ``error`` unless its top level is a mapping."""
    raw = read_yaml(path, where, error)
    if not isinstance(raw, dict):
        raise error(f"{where}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw
