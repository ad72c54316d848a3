"""Shared helpers for ingest tests: a CSV source spec and a fixed clock."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from recsys_peft.ingest.spec import AttributeSource, InteractionSource, SourceSpec

# Every ingest test runs as of this instant, so "timestamp in the future" does not depend on
# the day the tests run.
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    return folder


@pytest.fixture
def make_spec():
    """Return a source spec factory. By default the spec reads ``events.csv`` (user, item, ts, rating)."""

    def make(
        fmt: str = "csv",
        file: str = "events.csv",
        dedup: str = "first",
        weight: bool = True,
        timestamp_unit: str = "s",
        timezone_name: str = "UTC",
        users: AttributeSource | None = None,
        items: AttributeSource | None = None,
    ) -> SourceSpec:
        columns = {"user_id": "user", "item_id": "item", "timestamp": "ts"}
        if weight:
            columns["weight"] = "rating"
        return SourceSpec(
            name="test-source",
            format=fmt,
            interactions=InteractionSource(file, columns, timestamp_unit, timezone_name),
            users=users,
            items=items,
            dedup=dedup,
        )

    return make
