"""A snapshot cut down to the ids and feature values an older base model has rows for.

The vocabulary only grows, so the first ``num_users`` users and ``num_items`` items of a newer
snapshot are the ids an older model was trained with. Restricting to them lets that model
score the newest data, and lets two models of different vocabularies be compared on one view.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys_peft import atomic
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.dataset.split import leave_one_out
from recsys_peft.models.two_tower import ItemTags


def restrict_snapshot(snapshot: DataSnapshot, num_users: int, num_items: int,
                      attribute_cardinalities: dict[str, int], num_tags: int) -> DataSnapshot:
    """Keep only the users and items below the given counts, and the events between them.

    Attribute codes the model has no row for become 0 (unknown), and tags beyond ``num_tags``
    are dropped. The split is redone on the remaining events, so every user's last known
    event is its test target. The snapshot is returned unchanged when it already fits.
    """
    log, features = snapshot.log, snapshot.features
    if num_users > log.num_users or num_items > log.num_items:
        raise ValueError(f"a model of {num_users} users and {num_items} items does not fit snapshot "
                         f"{snapshot.snapshot_id} of {log.num_users} users and {log.num_items} items: "
                         "the vocabulary only grows, so the model is newer than the data")
    cardinalities = features.attribute_cardinalities
    fits = (num_users == log.num_users and num_items == log.num_items and num_tags >= len(features.tag_values)
            and all(cardinalities[name] <= attribute_cardinalities.get(name, 0) for name in cardinalities))
    if fits:
        return snapshot

    # Events of known users on known items; events stay in (user, time) order.
    keep = (log.users < num_users) & (log.items < num_items)
    restricted = InteractionLog.from_arrays(log.users[keep], log.items[keep], log.timestamps[keep],
                                            num_users, num_items, log.vocabulary_version)

    # NOTE: a categorical attribute's codes follow its sorted values, so a new value sorting
    # before known ones shifts their codes. Codes are only clipped here, not re-encoded.
    codes = features.user_attributes[:num_users].copy()
    for column, encoder in enumerate(features.encoders):
        limit = attribute_cardinalities.get(encoder.name, 1)
        codes[:, column] = np.where(codes[:, column] < limit, codes[:, column], 0)
    offsets = features.item_tags.offsets[:num_items + 1]
    values = features.item_tags.values[:int(offsets[-1])]
    known = values < num_tags
    lengths = torch.zeros(num_items, dtype=torch.long)
    item_of_value = torch.repeat_interleave(torch.arange(num_items), torch.diff(offsets))
    lengths.index_add_(0, item_of_value[known], torch.ones(int(known.sum()), dtype=torch.long))
    tags = ItemTags(torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)]), values[known])
    features = replace(features, user_attributes=codes, tag_values=features.tag_values[:num_tags], item_tags=tags)

    segments = snapshot.segments
    segments = replace(segments, user_segments=segments.user_segments[:num_users],
                       candidates=segments.candidates[:num_users])
    return replace(snapshot, log=restricted, split=leave_one_out(restricted), features=features,
                   segments=segments, users=snapshot.users.slice(0, num_users),
                   items=snapshot.items.slice(0, num_items))


def write_restricted_vocabulary(store_dir: str | Path, out_dir: str | Path, num_users: int, num_items: int,
                                version: str) -> Path:
    """Write the store's vocabulary cut to the first ``num_users`` users and ``num_items`` items.

    An export copies the vocabulary of the store it is given, and scoring maps ids through it,
    so a model of an older vocabulary is exported with this folder as its store. Returns
    ``out_dir``, which then contains ``vocab/`` only.
    """
    source, out_dir = Path(store_dir) / "vocab", Path(out_dir)
    with atomic.replace_dir(out_dir) as staging:
        (staging / "vocab").mkdir()
        for name, count in (("users.parquet", num_users), ("items.parquet", num_items)):
            table = pq.read_table(source / name)
            pq.write_table(table.slice(0, count), staging / "vocab" / name)
        atomic.write_json(staging / "vocab" / "version.json", {"version": version})
    return out_dir
