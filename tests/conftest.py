"""Fixtures shared by the model, adapter, training, export, scoring and flow tests.

One small synthetic log (120 users, 150 items, seed 0) is generated, ingested and loaded once
per session, and a tiny two-tower model is pretrained on it for three seeded epochs. Tests
that change a model take a deep copy (``base_model``) so the session model stays as trained.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# ``flows`` is not an installed package, so a bare ``pytest`` run needs the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recsys_peft.adapters.lora import LoRAConfig  # noqa: E402
from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES  # noqa: E402
from recsys_peft.dataset.features import user_batch  # noqa: E402
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot  # noqa: E402
from recsys_peft.dataset.synthetic import SyntheticLog, generate  # noqa: E402
from recsys_peft.export.exporter import export_two_tower  # noqa: E402
from recsys_peft.ingest.ingest import IngestSummary, ingest_source  # noqa: E402
from recsys_peft.ingest.spec import load_source_spec  # noqa: E402
from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel, UserBatch  # noqa: E402
from recsys_peft.segments import load_segment_spec  # noqa: E402
from recsys_peft.training.finetune import SegmentAdapter, adapter_slots, stack_adapters  # noqa: E402
from recsys_peft.training.loop import TrainConfig  # noqa: E402
from recsys_peft.training.pretrain import Pretrained, pretrain_two_tower, two_tower_config  # noqa: E402

# The test tensors are tiny, so extra threads only add synchronisation. On a 2-core host shared
# with another job, two threads made one pretraining epoch of this data take 0.4-18 s instead of 0.1 s.
torch.set_num_threads(1)

SEGMENT_SPEC = ROOT / "features" / "segments" / "gender_x_age.yaml"
TINY_MODEL = {"embedding_dim": 16, "hidden_dim": 32, "history_length": 10, "recent_length": 3}
TINY_LORA = LoRAConfig(r=4, alpha=8.0)
PRETRAIN = TrainConfig(epochs=3, batch_size=64, learning_rate=5e-3, patience=3, seed=0)
# Segments that get a random (non-zero) adapter in ``adapted``. The others fall back to the base.
KEPT_SEGMENTS = (1, 6, 13)


@pytest.fixture(scope="session")
def tiny_lora() -> LoRAConfig:
    return TINY_LORA


@pytest.fixture(scope="session")
def synthetic_log(tmp_path_factory: pytest.TempPathFactory) -> SyntheticLog:
    return generate(tmp_path_factory.mktemp("raw"), num_users=120, num_items=150, seed=0)


@pytest.fixture(scope="session")
def store(synthetic_log: SyntheticLog, tmp_path_factory: pytest.TempPathFactory) -> IngestSummary:
    spec = load_source_spec(synthetic_log.spec_path)
    return ingest_source(spec, synthetic_log.folder, tmp_path_factory.mktemp("work") / "store")


@pytest.fixture(scope="session")
def snapshot(store: IngestSummary) -> DataSnapshot:
    return load_snapshot(store.store_dir, load_segment_spec(SEGMENT_SPEC), MOVIELENS_USER_ATTRIBUTES)


@pytest.fixture(scope="session")
def tiny_config(snapshot: DataSnapshot) -> TwoTowerConfig:
    return two_tower_config(snapshot, **TINY_MODEL)


@pytest.fixture(scope="session")
def pretrained(snapshot: DataSnapshot, tiny_config: TwoTowerConfig) -> Pretrained:
    return pretrain_two_tower(snapshot, tiny_config, PRETRAIN)


@pytest.fixture
def base_model(pretrained: Pretrained) -> TwoTowerModel:
    """A private copy of the pretrained model, in eval mode."""
    model = copy.deepcopy(pretrained.model)
    model.eval()
    return model


def _random_adapter_state(model: TwoTowerModel, seed: int) -> dict[str, torch.Tensor]:
    """Draw one segment's adapter weights with a non-zero B, so the adapter changes the scores."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape[1:], generator=generator) * 0.3
            for name, p in model.named_parameters() if ".lora_" in name and p.numel() > 0}


def _segment_adapters(snapshot: DataSnapshot, model: TwoTowerModel, kept: tuple[int, ...]) -> list[SegmentAdapter]:
    """Build one ``SegmentAdapter`` per segment: random weights for ``kept``, base-model fallback otherwise."""
    probe = stack_adapters(model, [], 1, TINY_LORA)
    adapters = []
    for index, name in enumerate(snapshot.segments.names):
        state = _random_adapter_state(probe, seed=index) if index in kept else None
        adapters.append(SegmentAdapter(name, index, int(np.sum(snapshot.segments.user_segments == index)), 0,
                                       0.0, 0.0, state, "kept" if state is not None else "fallback"))
    return adapters


@pytest.fixture(scope="session")
def adapted(snapshot: DataSnapshot, pretrained: Pretrained) -> tuple[TwoTowerModel, np.ndarray]:
    """The pretrained model with random adapters in ``KEPT_SEGMENTS``, and each user's slot."""
    adapters = _segment_adapters(snapshot, pretrained.model, KEPT_SEGMENTS)
    model = stack_adapters(pretrained.model, adapters, len(snapshot.segments.names), TINY_LORA)
    return model, adapter_slots(snapshot, adapters)


@pytest.fixture(scope="session")
def export_dir(snapshot: DataSnapshot, store: IngestSummary, adapted: tuple[TwoTowerModel, np.ndarray],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of ``adapted``, shared by the session, so tests must not write into it."""
    model, slots = adapted
    out_dir = tmp_path_factory.mktemp("export") / "export"
    export_two_tower(model, snapshot, slots, out_dir, store.store_dir, {"base_model_hash": "0" * 64}, seed=0)
    return out_dir


@pytest.fixture(scope="session")
def make_adapters(snapshot: DataSnapshot) -> Callable[[TwoTowerModel, tuple[int, ...]], list[SegmentAdapter]]:
    """Build one ``SegmentAdapter`` per segment, with random weights for the given segment indices."""
    return lambda model, kept: _segment_adapters(snapshot, model, kept)


@pytest.fixture(scope="session")
def final_batch(snapshot: DataSnapshot, tiny_config: TwoTowerConfig) -> Callable[[np.ndarray | None], UserBatch]:
    """Build the inputs of every user as of the end of the log, with the given adapter slots."""
    def build(slots: np.ndarray | None = None) -> UserBatch:
        users = np.arange(snapshot.log.num_users)
        positions = snapshot.log.offsets[users + 1]
        return user_batch(snapshot.log, snapshot.features, users, positions, tiny_config.history_length, slots)

    return build


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
