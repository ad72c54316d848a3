"""Pretrain the two-tower model under torchrun, its embedding tables sharded over the ranks.

    python -m torch.distributed.run --nproc_per_node 2 --standalone \\
        -m recsys_peft.distributed.pretrain --store STORE --out FOLDER

Every rank builds the same model from the same seed. ``DistributedModelParallel`` shards the
``EmbeddingBagCollection`` (table-wise by default, or row-wise) and wraps the dense layers in
``DistributedDataParallel``. Each global batch of ``batch_size`` examples is split evenly over
the ranks, so one step trains on the same examples as one single-process step, but each rank's
in-batch softmax only uses its own share of the batch as negatives. The dense layers train
with ``torch.optim.Adam``. The tables train with Adagrad fused into the backward pass, because
FBGEMM's CPU kernels (fbgemm-gpu-cpu 1.8.0) support only SGD and the Adagrad variants, not Adam.

Unlike ``training.pretrain``, this runs a fixed number of epochs without early stopping.
Rank 0 then gathers every shard, scores the validation targets with the plain model and
writes the folder that ``registry.artifacts.load_base_model`` reads, plus ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
from torchrec.distributed.types import ShardingEnv, ShardedTensor
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from recsys_peft import atomic
from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot
from recsys_peft.models.two_tower import ItemTags, TwoTowerConfig, TwoTowerModel, UserBatch
from recsys_peft.registry.artifacts import save_base_model
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.losses import in_batch_softmax_loss, item_log_q
from recsys_peft.training.pretrain import training_examples, two_tower_config, validation_ndcg
from recsys_peft.distributed.sharding import SHARDING_TYPES, sharding_plan

RUN_FILE = "run.json"
# Adagrad step of the tables; Adagrad needs a larger step than the Adam of the dense layers.
TABLE_LEARNING_RATE = 0.05


class TwoTowerTrainingStep(nn.Module):
    """The two-tower model with its in-batch softmax loss as ``forward``.

    ``DistributedDataParallel`` synchronises gradients only for what runs inside ``forward``,
    so the loss has to be computed there rather than by calling the model's methods.
    """

    def __init__(self, model: TwoTowerModel, tags: ItemTags, log_q: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.tags = tags
        self.register_buffer("log_q", log_q, persistent=False)

    def forward(self, users: torch.Tensor, history: torch.Tensor, attributes: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        segments = torch.full_like(users, -1)
        vectors = self.model.user_embeddings(UserBatch(users, history, attributes, segments))
        items = self.model.item_embeddings(targets, self.tags)
        return in_batch_softmax_loss(vectors, items, targets, self.log_q, self.model.config.temperature)


def _full_state(model: nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """Gather every sharded table to rank 0; every rank must call this (it is a collective)."""
    state = {}
    for name, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.empty(value.size(), dtype=value.dtype) if rank == 0 else None
            value.gather(dst=0, out=full)
            value = full
        if rank == 0:
            state[name.removeprefix("model.")] = value.detach().clone()
    return state


def pretrain_sharded(snapshot: DataSnapshot, config: TwoTowerConfig, train: TrainConfig,
                     sharding: str = "table_wise",
                     table_learning_rate: float = TABLE_LEARNING_RATE) -> tuple[TwoTowerModel | None, dict]:
    """Train on every rank of the default process group; return the model and run record on rank 0.

    Other ranks return ``(None, record)``. The process group must already be initialised.
    ``table_learning_rate`` is the Adagrad step of the embedding tables.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if train.batch_size < 2 * world_size:
        raise ValueError(f"batch_size must give each of {world_size} ranks at least 2 examples, "
                         f"got batch_size={train.batch_size}")
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    model = TwoTowerModel(config)
    examples = training_examples(snapshot, config.history_length)
    log_q = item_log_q(examples.targets, snapshot.log.num_items)
    step = TwoTowerTrainingStep(model, snapshot.features.item_tags, log_q)

    # The tables' optimizer runs inside their backward pass, fused into the sharded kernel.
    apply_optimizer_in_backward(torch.optim.Adagrad, model.ebc.parameters(), {"lr": table_learning_rate})
    plan = sharding_plan(step, model.ebc, world_size, sharding)
    env = ShardingEnv.from_process_group(dist.group.WORLD)
    # Empty LoRA slots and the unused lookup adapter never receive gradients.
    wrapper = DefaultDataParallelWrapper(find_unused_parameters=True, static_graph=False)
    sharded = DistributedModelParallel(step, env=env, device=torch.device("cpu"), plan=plan,
                                       data_parallel_wrapper=wrapper)
    dense = [p for n, p in sharded.named_parameters() if "embedding_bags" not in n and p.requires_grad
             and p.numel() > 0]
    optimizer = torch.optim.Adam(dense, lr=train.learning_rate, weight_decay=train.weight_decay)

    generator = torch.Generator().manual_seed(train.seed)
    history, started = [], time.perf_counter()
    for epoch in range(1, train.epochs + 1):
        sharded.train()
        epoch_started = time.perf_counter()
        order = torch.randperm(len(examples), generator=generator)
        total, batches = 0.0, 0
        # Every rank runs the same number of steps, so the tail shorter than one batch is dropped.
        for begin in range(0, len(order) - train.batch_size + 1, train.batch_size):
            index = order[begin:begin + train.batch_size][rank::world_size]
            inputs = examples.inputs.select(index)
            loss = sharded(inputs.users, inputs.history, inputs.attributes, examples.targets[index])

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().item()
            batches += 1
        mean_loss = torch.tensor([total / max(batches, 1)])
        dist.all_reduce(mean_loss)
        history.append({"epoch": epoch, "loss": mean_loss.item() / world_size, "steps": batches,
                        "seconds": time.perf_counter() - epoch_started})

    state = _full_state(sharded, rank)
    record = {"world_size": world_size, "sharding": sharding, "epochs": train.epochs, "history": history,
              "table_optimizer": "adagrad", "table_learning_rate": table_learning_rate,
              "seconds": time.perf_counter() - started,
              "plan": {table: {"sharding_type": option.sharding_type, "ranks": option.ranks}
                       for module_plan in plan.plan.values() for table, option in module_plan.items()}}
    if rank != 0:
        return None, record
    plain = TwoTowerModel(config)
    plain.load_state_dict(state)
    plain.eval()
    record["valid_ndcg@10"] = validation_ndcg(plain, snapshot)
    return plain, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain the two-tower model with sharded embedding tables "
                                                 "(run it under torchrun).")
    parser.add_argument("--store", required=True, help="the interaction store to train on")
    parser.add_argument("--out", required=True, help="folder for the model files and run.json (written by rank 0)")
    parser.add_argument("--segment-spec", default="features/segments/gender_x_age.yaml",
                        help="segment spec, recorded with the model (default: the gender x age spec)")
    parser.add_argument("--sharding", default="table_wise", choices=sorted(SHARDING_TYPES),
                        help="how tables are split over ranks (default: table_wise)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs to run, without early stopping (default: 5)")
    parser.add_argument("--batch-size", type=int, default=512, help="global batch size over all ranks (default: 512)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam learning rate (default: 0.002)")
    parser.add_argument("--table-learning-rate", type=float, default=TABLE_LEARNING_RATE,
                        help=f"Adagrad learning rate of the embedding tables (default: {TABLE_LEARNING_RATE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the example order (default: 0)")
    parser.add_argument("--model-overrides", default="{}",
                        help='JSON of TwoTowerConfig fields, e.g. \'{"embedding_dim": 16}\' (default: {})')
    args = parser.parse_args(argv)

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group(backend="gloo")
    try:
        snapshot = load_snapshot(args.store, load_segment_spec(args.segment_spec), MOVIELENS_USER_ATTRIBUTES)
        config = two_tower_config(snapshot, **json.loads(args.model_overrides))
        train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            seed=args.seed)
        model, record = pretrain_sharded(snapshot, config, train, args.sharding, args.table_learning_rate)
        if model is not None:
            out = Path(args.out)
            save_base_model(model, out, {
                "vocabulary_version": snapshot.log.vocabulary_version,
                "training_data_snapshot": snapshot.snapshot_id,
                "train_config": asdict(train),
                "metrics": {"valid_ndcg@10": record["valid_ndcg@10"]},
                "history": record["history"],
                "distributed": {k: record[k] for k in ("world_size", "sharding", "plan")},
            })
            atomic.write_json(out / RUN_FILE, record)
            print(f"pretrain_sharded world_size={record['world_size']} sharding={args.sharding} "
                  f"epochs={args.epochs} valid_ndcg@10={record['valid_ndcg@10']:.4f} "
                  f"{record['seconds']:.1f}s out={out}", flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
