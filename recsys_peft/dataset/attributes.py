"""Categorical encoding of user and item attributes, with optional numeric bins.

Code 0 is reserved for a missing or unknown value, so a user without attributes still gets a row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LOGGER = logging.getLogger(__name__)
UNKNOWN = "<unknown>"


@dataclass(frozen=True)
class AttributeEncoder:
    """Maps raw values to codes; ``bins`` (right-open edges) turn numbers into labelled bands."""

    name: str
    values: tuple[str, ...]          # code i + 1 is values[i]; code 0 is unknown
    bins: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.bins and len(self.labels) != len(self.bins) + 1:
            raise ValueError(
                f"attribute {self.name!r}: {len(self.bins)} bin edges need {len(self.bins) + 1} "
                f"labels, got {len(self.labels)}"
            )

    @classmethod
    def fit(cls, name: str, raw: Sequence[object], bins: Sequence[float] = (),
            labels: Sequence[str] = ()) -> "AttributeEncoder":
        if bins:
            _check_numeric(name, raw)
            labels = tuple(labels) or _default_labels(bins)
            return cls(name, tuple(labels), tuple(float(b) for b in bins), tuple(labels))
        seen = sorted({str(v) for v in raw if v is not None and str(v) != ""})
        return cls(name, tuple(seen))

    @property
    def cardinality(self) -> int:
        return len(self.values) + 1

    def labels_of(self, raw: Sequence[object]) -> list[str | None]:
        """Return the label of each value (its band when binned), None when missing, NaN or not a number."""
        if not self.bins:
            return [None if v is None or str(v) == "" else str(v) for v in raw]
        out: list[str | None] = []
        for value in raw:
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out.append(None)
                continue
            if np.isnan(number):  # a missing number, which searchsorted would put in the last band
                out.append(None)
                continue
            out.append(self.labels[int(np.searchsorted(self.bins, number, side="right"))])
        return out

    def encode(self, raw: Sequence[object]) -> np.ndarray:
        lookup = {value: code + 1 for code, value in enumerate(self.values)}
        return np.array([lookup.get(label, 0) if label is not None else 0
                         for label in self.labels_of(raw)], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"name": self.name, "values": list(self.values), "bins": list(self.bins),
                "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict) -> "AttributeEncoder":
        return cls(data["name"], tuple(data["values"]), tuple(data.get("bins", ())),
                   tuple(data.get("labels", ())))


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _check_numeric(name: str, raw: Sequence[object]) -> None:
    """Raise when a binned attribute has values but none is a number; log the count of any that are not."""
    present = [v for v in raw if v is not None and str(v) != ""]
    bad = [v for v in present if not _is_number(v)]
    if present and len(bad) == len(present):
        raise ValueError(f"attribute {name!r} has bins, but none of its {len(present)} values is a number "
                         f"(for example {bad[0]!r}); remove the bins or point them at a numeric attribute")
    if bad:
        LOGGER.warning("attribute=%s non_numeric_values=%d of=%d example=%r: these rows get the unknown code",
                       name, len(bad), len(present), bad[0])


def _default_labels(bins: Sequence[float]) -> tuple[str, ...]:
    edges = [f"{b:g}" for b in bins]
    middle = [f"{lo}-{hi}" for lo, hi in zip(edges, edges[1:])]
    return (f"<{edges[0]}", *middle, f"{edges[-1]}+")
