"""Read a YAML file with a safe loader, and report syntax errors with the file, line and column."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, where: str) -> object:
    """Parse ``path`` (an empty file gives ``{}``); ``where`` starts every error message."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = error.problem or error.context or "syntax error"
        raise ValueError(f"{where}: invalid YAML{position}: {problem}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: invalid YAML: {error}") from error
