"""Per-user segment labels from a column of the interaction log or from a user-to-segment file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def _user_key(table: pa.Table, users: pa.Table, where: str, what: str) -> str:
    for key in ("user_id", "user_idx"):
        if key in table.column_names and key in users.column_names:
            return key
    raise ValueError(f"{where}: the {what} and the users table share no user_id or user_idx column; "
                     f"{what} has {table.column_names}, users has {users.column_names}")


def _align(users: pa.Table, key: str, keys: list, values: list) -> list[str | None]:
    lookup = dict(zip(keys, values))
    return [lookup.get(k) for k in users.column(key).to_pylist()]


def log_column_labels(interactions: pa.Table, users: pa.Table, column: str, rule: str, where: str) -> list[str | None]:
    """Return each user's value of ``column``: on its latest event, or on most of its events.

    Events are taken in table order, which for ``read_interactions`` is time order, so
    ``latest`` is the value of the last row. ``most_frequent`` breaks ties by the smallest
    value. Users without events get None.
    """
    if column not in interactions.column_names:
        raise ValueError(f"{where}: the log has no column {column!r}; found {interactions.column_names}")
    key = _user_key(interactions, users, where, "log")
    user_keys = interactions.column(key).to_pylist()
    values = pc.cast(interactions.column(column), pa.string()).to_pylist()
    if rule == "latest":
        last: dict = {}
        for user, value in zip(user_keys, values):
            if value is not None and value != "":
                last[user] = value
        return _align(users, key, list(last), list(last.values()))

    counts: dict = {}
    for user, value in zip(user_keys, values):
        if value is not None and value != "":
            per_user = counts.setdefault(user, {})
            per_user[value] = per_user.get(value, 0) + 1
    chosen = {user: min(per_user, key=lambda v: (-per_user[v], v)) for user, per_user in counts.items()}
    return _align(users, key, list(chosen), list(chosen.values()))


def table_labels(path: str, users: pa.Table, user_column: str, segment_column: str, where: str) -> list[str | None]:
    """Return each user's segment from a Parquet or CSV user-to-segment file, or None when absent.

    Raises ValueError when a user appears with two different segments, because a user belongs
    to exactly one segment per level.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{where}: user-to-segment table not found: {file}")
    table = pq.read_table(file) if file.suffix == ".parquet" else pacsv.read_csv(file)
    for name in (user_column, segment_column):
        if name not in table.column_names:
            raise ValueError(f"{where}: {file} has no column {name!r}; found {table.column_names}")
    if user_column not in users.column_names:
        raise ValueError(f"{where}: the users table has no column {user_column!r} to join {file} on")
    user_keys = pc.cast(table.column(user_column), pa.string()).to_pylist()
    segments = pc.cast(table.column(segment_column), pa.string()).to_pylist()
    seen: dict = {}
    for user, segment in zip(user_keys, segments):
        if segment is None or segment == "":
            continue
        if seen.get(user, segment) != segment:
            raise ValueError(f"{where}: user {user!r} has two segments in {file}: "
                             f"{seen[user]!r} and {segment!r}; expected one")
        seen[user] = segment
    keys = pc.cast(users.column(user_column), pa.string()).to_pylist()
    return [seen.get(k) for k in keys]
