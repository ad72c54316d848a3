"""Synthetic interaction logs with planted segment tastes, for tests and benchmarks.

Users get gender, age and occupation; items get one to three genres and a popularity drawn
from a power law. Each (gender, age band) segment prefers some genres and each user has a
latent taste vector. Two samplers share that world:

- ``generate`` (small logs, tests): a user's events are drawn one at a time from a softmax over
  items of ``popularity + segment taste + user taste + sequential affinity``, without repeats.
- ``generate_log`` (logs of any size, benchmarks and ``recsys-peft generate``): each event
  first draws a genre from the user's genre preferences, then an item of that genre with
  probability proportional to its popularity. Events come in sessions spread over ``days``.
  Users are written in chunks, so memory stays bounded whatever the number of events.

Both write ``truth.npz`` with the preference scores the events were drawn from, which
``load_truth`` reads back for oracle comparisons.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary")
OCCUPATIONS = ("student", "engineer", "artist", "doctor", "other")
AGE_CHOICES = np.array([15, 21, 30, 40, 47, 52, 60])
AGE_BAND_EDGES = [18, 25, 35, 45, 50, 56]
NUM_SEGMENTS = 14  # 2 genders x 7 age bands
TRUTH_FILE = "truth.npz"

SPEC_TEMPLATE = """\
name: synthetic
format: csv
interactions:
  file: {interactions}
  columns: {{user_id: user, item_id: item, timestamp: ts, weight: rating}}
  timestamp_unit: s
  timezone: UTC
users:
  file: users.csv
  id: user
  attributes: {{age: age, gender: gender, occupation: occupation}}
items:
  file: items.csv
  id: item
  attributes: {{genres: genres}}
  multi_valued: {{genres: "|"}}
dedup: first
"""


@dataclass(frozen=True)
class SyntheticLog:
    """Folder, spec path and sizes of a generated log."""

    folder: Path
    spec_path: Path
    num_users: int
    num_items: int
    num_interactions: int


@dataclass(frozen=True)
class _World:
    """Users, items and the taste parameters that every event is drawn from."""

    genders: np.ndarray       # (U,) "F" or "M"
    ages: np.ndarray          # (U,) int
    occupations: np.ndarray   # (U,) str
    item_genres: list[np.ndarray]
    genre_matrix: np.ndarray  # (I, G) 1.0 where the item has the genre
    popularity: np.ndarray    # (I,) log-popularity, a shuffled power law
    segment: np.ndarray       # (U,) segment index, gender x age band
    segment_taste: np.ndarray  # (14, G)
    user_taste: np.ndarray    # (U, G)

    def genre_scores(self, users: np.ndarray) -> np.ndarray:
        """Return the taste of ``users`` for each genre, shape (len(users), G)."""
        return self.segment_taste[self.segment[users]] + self.user_taste[users]


def _draw_world(rng: np.random.Generator, num_users: int, num_items: int) -> _World:
    # The order of the draws fixes the output of ``generate`` for a seed: keep it.
    genders = rng.choice(["F", "M"], size=num_users)
    ages = rng.choice(AGE_CHOICES, size=num_users)
    occupations = rng.choice(OCCUPATIONS, size=num_users)
    item_genres = [rng.choice(len(GENRES), size=rng.integers(1, 4), replace=False) for _ in range(num_items)]
    genre_matrix = np.zeros((num_items, len(GENRES)))
    for item, genres in enumerate(item_genres):
        genre_matrix[item, genres] = 1.0
    popularity = -1.1 * np.log(np.arange(1, num_items + 1))  # power law (Zipf-like)
    rng.shuffle(popularity)
    band = np.searchsorted(AGE_BAND_EDGES, ages, side="right")
    segment = (genders == "M").astype(int) * 7 + band
    segment_taste = rng.normal(0, 1.5, size=(NUM_SEGMENTS, len(GENRES)))
    user_taste = rng.normal(0, 0.7, size=(num_users, len(GENRES)))
    return _World(genders, ages, occupations, item_genres, genre_matrix, popularity, segment,
                  segment_taste, user_taste)


def _write_attributes(folder: Path, world: _World) -> None:
    num_users, num_items = len(world.genders), len(world.item_genres)
    pacsv.write_csv(pa.table({"user": [f"u{u}" for u in range(num_users)], "age": world.ages.tolist(),
                              "gender": world.genders.tolist(), "occupation": world.occupations.tolist()}),
                    folder / "users.csv")
    pacsv.write_csv(pa.table({"item": [f"i{i}" for i in range(num_items)],
                              "genres": ["|".join(GENRES[g] for g in gs) for gs in world.item_genres]}),
                    folder / "items.csv")


def _write_spec(folder: Path, interactions: str) -> Path:
    spec_path = folder / "spec.yaml"
    spec_path.write_text(SPEC_TEMPLATE.format(interactions=interactions), encoding="utf-8")
    return spec_path


def generate(
    folder: str | Path,
    num_users: int = 200,
    num_items: int = 300,
    events_per_user: tuple[int, int] = (10, 40),
    seed: int = 0,
    start_time: int = 1_600_000_000,
) -> SyntheticLog:
    """Write ``interactions.csv``, ``users.csv``, ``items.csv``, ``spec.yaml`` and ``truth.npz``.

    ``truth.npz`` contains ``scores`` (U, I): the logits each user's events were drawn from, before
    the sequential boost. The log is small by design: sampling costs O(items) per event.
    """
    low, high = events_per_user
    if not 0 <= low <= high <= num_items:
        # A user never repeats an item, so it cannot have more events than there are items.
        raise ValueError(
            f"events_per_user must satisfy 0 <= low <= high <= num_items={num_items}, got {events_per_user}"
        )
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    world = _draw_world(rng, num_users, num_items)
    all_users = np.arange(num_users)
    base_scores = world.popularity[None, :] + world.genre_scores(all_users) @ world.genre_matrix.T  # (U, I)
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
    _write_attributes(folder, world)
    np.savez(folder / TRUTH_FILE, scores=base_scores, successor=successor)
    spec_path = _write_spec(folder, "interactions.csv")
    return SyntheticLog(folder, spec_path, num_users, num_items, len(rows_user))


def _events_per_user(rng: np.random.Generator, num_interactions: int, num_users: int,
                     activity_spread: float = 1.0) -> np.ndarray:
    """Split ``num_interactions`` over users with a log-normal activity of sigma ``activity_spread``."""
    activity = rng.lognormal(0.0, activity_spread, size=num_users)
    return rng.multinomial(num_interactions, activity / activity.sum())


def _genre_item_tables(world: _World) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per genre: its items and the cumulative distribution of their popularity."""
    weights = np.exp(world.popularity - world.popularity.max())
    items_of, cdf_of = [], []
    for genre in range(world.genre_matrix.shape[1]):
        items = np.flatnonzero(world.genre_matrix[:, genre])
        cdf = np.cumsum(weights[items])
        items_of.append(items)
        cdf_of.append(cdf / cdf[-1] if len(cdf) else cdf)
    return items_of, cdf_of


def _genre_probabilities(world: _World, users: np.ndarray) -> np.ndarray:
    """Softmax of each user's genre taste over the genres that have items."""
    scores = world.genre_scores(users)
    scores = np.where(world.genre_matrix.sum(axis=0) > 0, scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def _session_times(rng: np.random.Generator, counts: np.ndarray, start_time: int, days: int,
                   events_per_session: float) -> np.ndarray:
    """Draw event times (epoch seconds) that cluster into sessions, grouped by user.

    Each user gets ``ceil(count / events_per_session)`` sessions starting uniformly within
    ``days``. Events are spread over the user's sessions at random, and within a session they
    follow each other at exponential gaps with a mean of one minute.
    """
    num_events = int(counts.sum())
    sessions = np.ceil(counts / events_per_session).astype(np.int64)
    session_base = np.concatenate([[0], np.cumsum(sessions)[:-1]])
    session_start = start_time + rng.integers(0, 86_400 * days, size=int(sessions.sum()))

    owner = np.repeat(np.arange(len(counts)), counts)
    session = session_base[owner] + (rng.random(num_events) * sessions[owner]).astype(np.int64)
    order = np.argsort(session, kind="stable")
    gaps = rng.exponential(60.0, size=num_events)
    in_order = session[order]
    cumulative = np.cumsum(gaps)
    first = np.concatenate([[True], in_order[1:] != in_order[:-1]])
    offset_of_session_start = np.maximum.accumulate(np.where(first, cumulative - gaps, 0.0))
    times = np.empty(num_events, dtype=np.int64)
    times[order] = session_start[in_order] + (cumulative - offset_of_session_start).astype(np.int64)
    return times


def generate_log(
    folder: str | Path,
    num_interactions: int,
    num_users: int | None = None,
    num_items: int | None = None,
    days: int = 60,
    seed: int = 0,
    start_time: int = 1_700_000_000,
    compress: bool = False,
    events_per_session: float = 8.0,
    users_per_chunk: int = 20_000,
    activity_spread: float = 1.0,
    segment_item_share: float = 0.0,
    segment_items: int | None = None,
) -> SyntheticLog:
    """Write a log of ``num_interactions`` events and its users, items, spec and truth.

    Defaults: one user per 50 events and one item per 500 events (at least 10 of each). The
    interactions go to ``interactions.csv`` (``interactions.csv.gz`` when ``compress``), sorted
    by time within each chunk of ``users_per_chunk`` users. A user may repeat an item.
    ``truth.npz`` holds the factors of the true preference: ``log p(item | user)`` is
    ``log(genre_probs[user] @ item_given_genre)[item]``, which ``load_truth`` computes.
    ``activity_spread`` is the sigma of the log-normal activity per user: 0 gives every user
    about the same number of events (long sessions for all), 1 (the default) a heavy tail.

    ``segment_item_share`` plants item-level segment tastes: that share of each user's events
    is drawn instead from their segment's own favourites, ``segment_items`` items (default 1%
    of the catalogue, at least 20) with power-law weights, different for each segment. Genre
    tastes show in any user's history, but which items a segment favours shows only across its
    users, which is what a per-segment adapter can learn and a shared model may average away.
    """
    if num_interactions < 0:
        raise ValueError(f"num_interactions must be >= 0, got {num_interactions}")
    num_users = num_users if num_users is not None else max(10, num_interactions // 50)
    num_items = num_items if num_items is not None else max(10, num_interactions // 500)
    if num_users < 1 or num_items < 1 or days < 1:
        raise ValueError(
            f"num_users, num_items and days must be >= 1, got {num_users}, {num_items} and {days}"
        )
    if not 0.0 <= segment_item_share <= 1.0:
        raise ValueError(f"segment_item_share must be in [0, 1], got {segment_item_share}")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    world = _draw_world(rng, num_users, num_items)
    items_of, cdf_of = _genre_item_tables(world)
    favourites = _segment_favourites(np.random.default_rng([seed, 1]), num_items,
                                     segment_items or max(20, num_items // 100)) if segment_item_share else None
    if activity_spread < 0:
        raise ValueError(f"activity_spread must be >= 0, got {activity_spread}")
    counts = _events_per_user(rng, num_interactions, num_users, activity_spread)

    name = "interactions.csv.gz" if compress else "interactions.csv"
    schema = pa.schema([("user", pa.string()), ("item", pa.string()), ("ts", pa.int64()), ("rating", pa.int8())])
    opener = gzip.open if compress else open
    options = pacsv.WriteOptions(quoting_style="needed")
    with opener(folder / name, "wb") as sink, pacsv.CSVWriter(sink, schema, write_options=options) as writer:
        for first_user in range(0, num_users, users_per_chunk):
            users = np.arange(first_user, min(first_user + users_per_chunk, num_users))
            chunk = _draw_chunk(rng, world, users, counts[users], items_of, cdf_of, start_time, days,
                                events_per_session, favourites, segment_item_share)
            writer.write_table(chunk.cast(schema))

    _write_attributes(folder, world)
    item_given_genre = np.zeros((len(GENRES), num_items))
    for genre, items in enumerate(items_of):
        if len(items):
            item_given_genre[genre, items] = np.diff(np.concatenate([[0.0], cdf_of[genre]]))
    truth = {"genre_probs": _genre_probabilities(world, np.arange(num_users)), "item_given_genre": item_given_genre}
    if favourites is not None:
        truth.update(segment_item_probs=favourites, user_segment=world.segment,
                     segment_item_share=np.float64(segment_item_share))
    np.savez(folder / TRUTH_FILE, **truth)
    spec_path = _write_spec(folder, name)
    return SyntheticLog(folder, spec_path, num_users, num_items, int(counts.sum()))


def _segment_favourites(rng: np.random.Generator, num_items: int, per_segment: int) -> np.ndarray:
    """Return (segments, I) probabilities: each segment's own items, with Zipf-like weights."""
    per_segment = min(per_segment, num_items)
    probs = np.zeros((NUM_SEGMENTS, num_items))
    weights = 1.0 / np.arange(1, per_segment + 1)
    for segment in range(NUM_SEGMENTS):
        items = rng.choice(num_items, size=per_segment, replace=False)
        probs[segment, items] = weights / weights.sum()
    return probs


def _draw_chunk(rng: np.random.Generator, world: _World, users: np.ndarray, counts: np.ndarray,
                items_of: list[np.ndarray], cdf_of: list[np.ndarray], start_time: int, days: int,
                events_per_session: float, favourites: np.ndarray | None = None,
                favourite_share: float = 0.0) -> pa.Table:
    """Draw the events of ``users`` and return them sorted by time."""
    owner = np.repeat(users, counts)
    genre_cdf = np.cumsum(_genre_probabilities(world, users), axis=1)
    local = np.repeat(np.arange(len(users)), counts)
    draw = rng.random(len(owner))
    genre = np.minimum((draw[:, None] > genre_cdf[local]).sum(axis=1), genre_cdf.shape[1] - 1)
    item = np.empty(len(owner), dtype=np.int64)
    for g, (items, cdf) in enumerate(zip(items_of, cdf_of)):
        rows = np.flatnonzero(genre == g)
        if len(rows):
            picks = np.searchsorted(cdf, rng.random(len(rows)), side="right")
            item[rows] = items[np.minimum(picks, len(items) - 1)]
    if favourites is not None:
        segment = world.segment[owner]
        swap = rng.random(len(owner)) < favourite_share
        for s in np.unique(segment[swap]):
            rows = np.flatnonzero(swap & (segment == s))
            cdf = np.cumsum(favourites[s])
            item[rows] = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(len(rows)), side="right"),
                                    len(cdf) - 1)
    times = _session_times(rng, counts, start_time, days, events_per_session)
    rating = rng.integers(1, 6, size=len(owner))

    order = np.argsort(times, kind="stable")
    user_ids = pc.binary_join_element_wise("u", pa.array(owner[order]).cast(pa.string()), "")
    item_ids = pc.binary_join_element_wise("i", pa.array(item[order]).cast(pa.string()), "")
    return pa.table({"user": user_ids, "item": item_ids, "ts": times[order], "rating": rating[order]})


@dataclass(frozen=True)
class Truth:
    """Preference scores that a generated log was drawn from."""

    scores_of: Callable[[np.ndarray], np.ndarray]  # user indices -> (len(users), I) scores

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Return the true scores of ``users`` (indices into ``users.csv``) for every item."""
        return self.scores_of(np.asarray(users, dtype=np.int64))


def load_truth(folder: str | Path) -> Truth:
    """Read ``truth.npz`` of a log written by ``generate`` or ``generate_log``.

    Scores of ``generate`` are its sampling logits. Scores of ``generate_log`` are
    ``log p(item | user)`` (with segment favourites, the mixture of both draws), minus infinity
    for an item the user can never draw.
    """
    data = np.load(Path(folder) / TRUTH_FILE)
    if "scores" in data:
        scores = data["scores"]
        return Truth(lambda users: scores[users])
    genre_probs, item_given_genre = data["genre_probs"], data["item_given_genre"]
    if "segment_item_probs" not in data:
        with np.errstate(divide="ignore"):
            return Truth(lambda users: np.log(genre_probs[users] @ item_given_genre))
    share, favourites, user_segment = float(data["segment_item_share"]), data["segment_item_probs"], data["user_segment"]

    def mixture(users: np.ndarray) -> np.ndarray:
        probs = (1.0 - share) * (genre_probs[users] @ item_given_genre) + share * favourites[user_segment[users]]
        with np.errstate(divide="ignore"):
            return np.log(probs)

    return Truth(mixture)
