"""Distillation: a student learns its teacher's ranking, and exports with its teacher named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES
from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.dataset.synthetic import generate
from recsys_peft.distillation import DistillConfig, distill, distillation_loss, export_student, teacher_targets
from recsys_peft.export.exporter import weights_hash
from recsys_peft.export.model import ExportedModel
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.scoring.batch import score_users
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import pretrain, sasrec_config, two_tower_config

from tests.conftest import SEGMENT_SPEC

TOP_K = 5


@pytest.fixture(scope="module")
def tiny_catalogue(tmp_path_factory):
    """A log of 80 users over a catalogue of 20 items, ingested and loaded."""
    raw = generate(tmp_path_factory.mktemp("raw"), num_users=80, num_items=20, events_per_user=(8, 16), seed=4)
    summary = ingest_source(load_source_spec(raw.spec_path), raw.folder, tmp_path_factory.mktemp("work") / "store")
    snapshot = load_snapshot(summary.store_dir, load_segment_spec(SEGMENT_SPEC), MOVIELENS_USER_ATTRIBUTES)
    return snapshot, summary.store_dir


@pytest.fixture(scope="module")
def teacher(tiny_catalogue):
    snapshot, _ = tiny_catalogue
    config = sasrec_config(snapshot, embedding_dim=32, num_heads=2, ffn_dim=64, max_length=10,
                           dropout=0.1, attention_dropout=0.1)
    return pretrain(snapshot, config, TrainConfig(epochs=3, batch_size=64, learning_rate=5e-3)).model.eval()


def _final_top_k(model, snapshot, k: int) -> torch.Tensor:
    """Each user's top-k items as of the end of the log, (U, k)."""
    log = snapshot.log
    users = np.arange(log.num_users)
    batch = user_batch(log, snapshot.features, users, log.offsets[users + 1], model.config.history_length)
    with torch.no_grad():
        scores = model.user_embeddings(batch) @ model.all_item_embeddings(snapshot.features.item_tags).T
    return torch.topk(scores, k, dim=1).indices


def _overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean share of each row's items in ``a`` that are also in the same row of ``b``."""
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / a.shape[1] for x, y in zip(a, b)]))


def _student(snapshot, dim: int) -> SASRecModel:
    torch.manual_seed(1)
    return SASRecModel(sasrec_config(snapshot, embedding_dim=dim, num_heads=2, ffn_dim=2 * dim, max_length=10,
                                     dropout=0.0, attention_dropout=0.0))


def test_student_reproduces_teacher_top_k(tiny_catalogue, teacher):
    snapshot, _ = tiny_catalogue
    student = _student(snapshot, dim=16)
    untrained_overlap = _overlap(_final_top_k(student, snapshot, TOP_K), _final_top_k(teacher, snapshot, TOP_K))
    config = DistillConfig(top_k=snapshot.log.num_items, temperature=1.0, kd_weight=1.0,
                           train=TrainConfig(epochs=30, batch_size=64, learning_rate=1e-2, patience=30))
    distilled = distill(teacher, student, snapshot, config)

    overlap = _overlap(_final_top_k(distilled.model, snapshot, TOP_K), _final_top_k(teacher, snapshot, TOP_K))
    assert overlap >= 0.9, f"top-{TOP_K} overlap {overlap:.3f} (untrained student: {untrained_overlap:.3f})"
    assert untrained_overlap < 0.6


def test_teacher_targets_are_its_top_k(tiny_catalogue, teacher):
    snapshot, _ = tiny_catalogue
    targets = teacher_targets(teacher, snapshot, top_k=TOP_K)

    assert len(targets) == len(snapshot.split.train_positions)
    assert targets.items.shape == (len(targets), TOP_K)
    assert torch.all(targets.scores[:, :-1] >= targets.scores[:, 1:])
    with pytest.raises(ValueError, match="top_k must be in \\[1, 20\\]"):
        teacher_targets(teacher, snapshot, top_k=21)


def test_distillation_loss_zero_when_equal():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.5, 0.5, 3.0]])
    assert float(distillation_loss(logits, logits, temperature=2.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_loss(logits.flip(1), logits, temperature=2.0)) > 0.1


def test_two_tower_student_exports_naming_teacher(tiny_catalogue, teacher, tmp_path):
    snapshot, store_dir = tiny_catalogue
    torch.manual_seed(2)
    student = TwoTowerModel(two_tower_config(snapshot, embedding_dim=8, hidden_dim=16, history_length=10,
                                             recent_length=3))
    config = DistillConfig(top_k=10, train=TrainConfig(epochs=2, batch_size=64, learning_rate=5e-3))
    distilled = distill(teacher, student, snapshot, config)
    manifest = export_student(distilled, teacher, snapshot, config, tmp_path / "student", store_dir,
                              teacher_version="sasrec-teacher")

    assert manifest["parity"]["passed"]
    assert manifest["family"] == "two_tower"
    assert manifest["teacher"]["family"] == "sasrec"
    assert manifest["teacher"]["weights_hash"] == weights_hash(teacher)
    assert manifest["teacher"]["model_version"] == "sasrec-teacher"
    assert manifest["distillation"]["top_k"] == 10
    exported = ExportedModel.load(tmp_path / "student")
    assert exported.item_vectors.shape == (snapshot.log.num_items, 8)

    # Batch scoring reads the student export like any other.
    users = np.arange(snapshot.log.num_users)
    table, summary = score_users(exported, snapshot.log, snapshot.users, users, snapshot.log.offsets[users + 1], k=3)
    assert summary.users == snapshot.log.num_users
    assert table.num_rows == 3 * snapshot.log.num_users
    assert set(table.column("model_version").to_pylist()) == {manifest["model_version"]}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="kd_weight must be in \\[0, 1\\], got 1.5"):
        DistillConfig(kd_weight=1.5)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        DistillConfig(temperature=0)
