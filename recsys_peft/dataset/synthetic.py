"""Synthetic interaction logs with planted segment tastes, for tests and benchmarks.

Users get gender, age and occupation; items get one to three genres and a popularity drawn
from a power law. Each (gender, age band) segment prefers some genres, each user has a latent
taste vector, and a user's events are drawn from a softmax over items of
``popularity + segment taste + user taste + sequential affinity``. Events of a user come in
sessions over time, so the log has a time order worth modelling. The true preference scores
can be returned for oracle comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary")
OCCUPATIONS = ("student", "engineer", "artist", "doctor", "other")
AGE_CHOICES = np.array([15, 21, 30, 40, 47, 52, 60])

SPEC_TEMPLATE = """\
name: synthetic
format: csv
interactions:
  file: interactions.csv
  columns: {user_id: user, item_id: item, timestamp: ts, weight: rating}
  timestamp_unit: s
  timezone: UTC
users:
  file: users.csv
  id: user
  attributes: {age: age, gender: gender, occupation: occupation}
items:
  file: items.csv
  id: item
  attributes: {genres: genres}
  multi_valued: {genres: "|"}
dedup: first
"""


@dataclass(frozen=True)
class SyntheticLog:
    folder: Path
    spec_path: Path
    num_users: int
    num_items: int
    num_interactions: int


def generate(
    folder: str | Path,
    num_users: int = 200,
    num_items: int = 300,
    events_per_user: tuple[int, int] = (10, 40),
    seed: int = 0,
    start_time: int = 1_600_000_000,
) -> SyntheticLog:
    """Write ``interactions.csv``, ``users.csv``, ``items.csv`` and ``spec.yaml`` to ``folder``."""
    low, high = events_per_user
    if not 0 <= low <= high <= num_items:
        # A user never repeats an item, so it cannot have more events than there are items.
        raise ValueError(
            f"events_per_user must satisfy 0 <= low <= high <= num_items={num_items}, got {events_per_user}"
        )
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    # Users and items.
    genders = rng.choice(["F", "M"], size=num_users)
    ages = rng.choice(AGE_CHOICES, size=num_users)
    occupations = rng.choice(OCCUPATIONS, size=num_users)
    item_genres = [rng.choice(len(GENRES), size=rng.integers(1, 4), replace=False) for _ in range(num_items)]
    genre_matrix = np.zeros((num_items, len(GENRES)))
    for item, genres in enumerate(item_genres):
        genre_matrix[item, genres] = 1.0
    popularity = -1.1 * np.log(np.arange(1, num_items + 1))  # power law (Zipf-like)
    rng.shuffle(popularity)

    # Preferences: segment taste over genres, user taste, and an item-to-item successor affinity.
    band = np.searchsorted([18, 25, 35, 45, 50, 56], ages, side="right")
    segment = (genders == "M").astype(int) * 7 + band
    segment_taste = rng.normal(0, 1.5, size=(14, len(GENRES)))
    user_taste = rng.normal(0, 0.7, size=(num_users, len(GENRES)))
    base_scores = popularity[None, :] + (segment_taste[segment] + user_taste) @ genre_matrix.T  # (U, I)
    successor = rng.integers(0, num_items, size=num_items)

    rows_user, rows_item, rows_ts, rows_rating = [], [], [], []
    for user in range(num_users):
        count = int(rng.integers(events_per_user[0], events_per_user[1] + 1))
        logits = base_scores[user].copy()
        time = start_time + int(rng.integers(0, 86_400 * 30))
        previous = -1
        for _ in range(count):
            boosted = logits.copy()
            if previous >= 0:
                boosted[successor[previous]] += 2.5
            probs = np.exp(boosted - boosted.max())
            probs /= probs.sum()
            item = int(rng.choice(num_items, p=probs))
            logits[item] = -np.inf  # no repeats
            rows_user.append(f"u{user}")
            rows_item.append(f"i{item}")
            rows_ts.append(time)
            rows_rating.append(int(rng.integers(1, 6)))
            time += int(rng.exponential(3_600))
            previous = item

    pacsv.write_csv(pa.table({"user": rows_user, "item": rows_item, "ts": rows_ts, "rating": rows_rating}),
                    folder / "interactions.csv")
    pacsv.write_csv(pa.table({"user": [f"u{u}" for u in range(num_users)], "age": ages.tolist(),
                              "gender": genders.tolist(), "occupation": occupations.tolist()}),
                    folder / "users.csv")
    pacsv.write_csv(pa.table({"item": [f"i{i}" for i in range(num_items)],
                              "genres": ["|".join(GENRES[g] for g in gs) for gs in item_genres]}),
                    folder / "items.csv")
    spec_path = folder / "spec.yaml"
    spec_path.write_text(SPEC_TEMPLATE, encoding="utf-8")
    return SyntheticLog(folder, spec_path, num_users, num_items, len(rows_user))
