"""Sharding plans for the two-tower model's embedding tables."""

from __future__ import annotations

import torch
from torchrec import EmbeddingBagCollection
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingPlan, ShardingType

SHARDING_TYPES = {"table_wise": ShardingType.TABLE_WISE.value, "row_wise": ShardingType.ROW_WISE.value}


def sharding_plan(module: torch.nn.Module, collection: EmbeddingBagCollection, world_size: int,
                  sharding: str = "table_wise", device: str = "cpu") -> ShardingPlan:
    """Plan every table of ``collection`` (a submodule of ``module``) with one sharding type.

    Table-wise places each whole table on one rank. Row-wise splits every table's rows over all
    ranks.
    """
    if sharding not in SHARDING_TYPES:
        raise ValueError(f"sharding must be one of {sorted(SHARDING_TYPES)}, got {sharding!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    constraints = {config.name: ParameterConstraints(sharding_types=[SHARDING_TYPES[sharding]])
                   for config in collection.embedding_bag_configs()}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world_size, compute_device=device),
                                       constraints=constraints, debug=False)
    try:
        return planner.collective_plan(module, [EmbeddingBagCollectionSharder()])
    except RuntimeError as error:
        if "No available sharding type" not in str(error):
            raise
        # TorchRec 1.8.0's planner offers no row-wise kernel on CPU, for example.
        raise ValueError(f"TorchRec cannot shard these tables {sharding} on device {device}; "
                         f"use another sharding type or device ({error})") from None
