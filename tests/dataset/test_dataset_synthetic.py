"""Synthetic logs: same seed, same files; the files ingest cleanly and load as a snapshot."""

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from recsys_peft.dataset.snapshot import load_snapshot, segment_of_users
from recsys_peft.dataset.synthetic import generate, generate_log, load_truth
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.segments import load_segment_spec

SEGMENT_SPEC = Path(__file__).resolve().parents[2] / "features" / "segments" / "gender_x_age.yaml"
FILES = ("interactions.csv", "users.csv", "items.csv", "spec.yaml")


def generate_small(folder: Path, seed: int = 3):
    """Write a 24-user, 30-item log with three to six events per user."""
    return generate(folder, num_users=24, num_items=30, events_per_user=(3, 6), seed=seed)


def test_synthetic_same_seed_same_files(tmp_path):
    generate_small(tmp_path / "a", seed=3)
    generate_small(tmp_path / "b", seed=3)

    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_synthetic_seed_changes_events(tmp_path):
    generate_small(tmp_path / "a", seed=3)
    generate_small(tmp_path / "b", seed=4)

    first = (tmp_path / "a" / "interactions.csv").read_bytes()
    second = (tmp_path / "b" / "interactions.csv").read_bytes()
    assert first != second


def test_synthetic_counts(tmp_path):
    log = generate_small(tmp_path)

    events = pacsv.read_csv(log.folder / "interactions.csv")
    per_user = events.group_by("user").aggregate([("item", "count")]).column("item_count").to_numpy()
    assert events.num_rows == log.num_interactions
    assert len(per_user) == log.num_users == 24
    assert per_user.min() >= 3
    assert per_user.max() <= 6
    assert pacsv.read_csv(log.folder / "users.csv").num_rows == 24
    assert pacsv.read_csv(log.folder / "items.csv").num_rows == log.num_items == 30


def test_synthetic_no_repeat_items(tmp_path):
    log = generate_small(tmp_path)

    events = pacsv.read_csv(log.folder / "interactions.csv")
    pairs = list(zip(events.column("user").to_pylist(), events.column("item").to_pylist()))
    assert len(set(pairs)) == len(pairs)


def test_synthetic_ingests_cleanly(tmp_path):
    log = generate_small(tmp_path / "raw")
    spec = load_source_spec(log.spec_path)

    summary = ingest_source(spec, log.folder, tmp_path / "store")

    assert summary.rows_read == log.num_interactions
    assert summary.rows_written == log.num_interactions
    assert summary.rows_quarantined == 0
    assert summary.rows_deduplicated == 0
    assert summary.users == log.num_users
    assert summary.items == log.num_items


def test_synthetic_snapshot(tmp_path):
    log = generate_small(tmp_path / "raw")
    ingest_source(load_source_spec(log.spec_path), log.folder, tmp_path / "store")

    snapshot = load_snapshot(tmp_path / "store", load_segment_spec(SEGMENT_SPEC),
                             {"age": [18, 25, 35, 45, 50, 56], "gender": [], "occupation": []})

    # Every user has at least three events, so every user has a test and a validation target.
    assert len(snapshot.split.test.users) == 24
    assert snapshot.split.users_without_target == 0
    assert len(snapshot.split.train_positions) == log.num_interactions - 48
    assert snapshot.segments.unassigned_users == 0
    assert len(snapshot.segments.names) == 14
    assert sorted(snapshot.user_ids) == sorted(f"u{u}" for u in range(24))
    assert len(snapshot.item_ids) == 30
    assert snapshot.features.attribute_cardinalities["age"] == 8
    assert snapshot.snapshot_id.startswith(snapshot.log.vocabulary_version + "/")

    users = pacsv.read_csv(log.folder / "users.csv").to_pylist()
    by_id = {row["user"]: row for row in users}
    band = np.searchsorted([18, 25, 35, 45, 50, 56], [by_id[u]["age"] for u in snapshot.user_ids], side="right")
    male = np.array([by_id[u]["gender"] == "M" for u in snapshot.user_ids])
    expected = male * 7 + band
    assert segment_of_users(snapshot, np.arange(24)).tolist() == expected.tolist()


def test_synthetic_log_counts(tmp_path):
    log = generate_log(tmp_path, 5_000, num_users=50, num_items=40, days=3, seed=1, users_per_chunk=16)

    events = pacsv.read_csv(log.folder / "interactions.csv")
    assert events.num_rows == log.num_interactions == 5_000
    assert set(events.column("user").to_pylist()) <= {f"u{u}" for u in range(50)}
    stamps = events.column("ts").to_numpy()
    assert stamps.min() >= 1_700_000_000
    assert stamps.max() < 1_700_000_000 + 4 * 86_400  # three days plus the last session's length


def test_synthetic_log_same_seed(tmp_path):
    generate_log(tmp_path / "a", 2_000, seed=5)
    generate_log(tmp_path / "b", 2_000, seed=5)

    for name in ("interactions.csv", "users.csv", "items.csv", "spec.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_synthetic_log_popularity_power_law(tmp_path):
    log = generate_log(tmp_path, 20_000, num_users=200, num_items=100, seed=2)

    counts = np.sort(pacsv.read_csv(log.folder / "interactions.csv").group_by("item").aggregate(
        [("user", "count")]).column("user_count").to_numpy())[::-1]
    # The ten most popular of 100 items get far more than a tenth of the events.
    assert counts[:10].sum() > 0.4 * counts.sum()


def test_synthetic_log_truth_matches_draws(tmp_path):
    log = generate_log(tmp_path, 20_000, num_users=20, num_items=50, seed=3)

    truth = load_truth(log.folder).scores(np.arange(20))
    events = pacsv.read_csv(log.folder / "interactions.csv")
    users = np.array([int(u[1:]) for u in events.column("user").to_pylist()])
    items = np.array([int(i[1:]) for i in events.column("item").to_pylist()])
    assert truth.shape == (20, 50)
    assert np.allclose(np.exp(truth).sum(axis=1), 1.0)  # log-probabilities of one draw
    # Every drawn item has a finite true score, and the mean score of drawn items beats a random item's.
    assert np.isfinite(truth[users, items]).all()
    finite = np.where(np.isfinite(truth), np.exp(truth), 0.0)
    assert np.exp(truth[users, items]).mean() > finite.mean()


def test_synthetic_small_truth(tmp_path):
    log = generate_small(tmp_path)

    assert load_truth(log.folder).scores(np.array([0, 1])).shape == (2, 30)


def test_synthetic_log_ingests_cleanly(tmp_path):
    log = generate_log(tmp_path / "raw", 3_000, num_users=30, num_items=20, compress=True, seed=4)

    summary = ingest_source(load_source_spec(log.spec_path), log.folder, tmp_path / "store")

    assert summary.rows_read == 3_000
    assert summary.rows_quarantined == 0
    assert summary.rows_written + summary.rows_deduplicated == 3_000
    assert summary.users == 30


def test_synthetic_segment_favourites_match_truth(tmp_path):
    log = generate_log(tmp_path, 40_000, num_users=200, num_items=400, seed=4,
                       segment_item_share=0.5, segment_items=20)

    truth = load_truth(log.folder).scores(np.arange(200))
    data = np.load(log.folder / "truth.npz")
    events = pacsv.read_csv(log.folder / "interactions.csv")
    users = np.array([int(u[1:]) for u in events.column("user").to_pylist()])
    items = np.array([int(i[1:]) for i in events.column("item").to_pylist()])
    favourite = data["segment_item_probs"][data["user_segment"][users], items] > 0
    assert np.allclose(np.exp(truth).sum(axis=1), 1.0)
    assert np.isfinite(truth[users, items]).all()
    # Half the draws come from the segment's 20 favourites; the genre draws add a few more.
    assert 0.5 <= favourite.mean() < 0.6
    assert (data["segment_item_probs"] > 0).sum(axis=1).tolist() == [20] * 14


def test_synthetic_no_favourites_unchanged(tmp_path):
    generate_log(tmp_path / "a", 2_000, seed=5)
    generate_log(tmp_path / "b", 2_000, seed=5, segment_item_share=0.0, segment_items=50)

    assert (tmp_path / "a" / "interactions.csv").read_bytes() == (tmp_path / "b" / "interactions.csv").read_bytes()
