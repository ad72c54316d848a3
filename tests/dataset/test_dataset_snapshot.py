"""load_snapshot with segments read from a column of the interaction log."""

import numpy as np
import pytest

from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.ingest.store import read_interactions
from recsys_peft.segments import load_segment_spec


def test_snapshot_log_column_segments(store, tmp_path):
    spec_path = tmp_path / "by_event.yaml"
    spec_path.write_text("name: by-event\nsource: log_column\ncolumn: event_type\nrule: latest\n", encoding="utf-8")

    snapshot = load_snapshot(store.store_dir, load_segment_spec(spec_path), MOVIELENS_USER_ATTRIBUTES)

    log = read_interactions(store.store_dir)
    expected = sorted(set(log.column("event_type").to_pylist()))
    assert list(snapshot.segments.names) == expected
    assert np.all(snapshot.segments.user_segments >= 0)


def test_snapshot_log_column_missing_named(store, tmp_path):
    spec_path = tmp_path / "by_country.yaml"
    spec_path.write_text("name: by-country\nsource: log_column\ncolumn: country\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"the log has no column 'country'; found \[.*'event_type'"):
        load_snapshot(store.store_dir, load_segment_spec(spec_path), MOVIELENS_USER_ATTRIBUTES)
