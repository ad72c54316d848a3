"""Layer freezing: each method trains exactly its parameters, and the result saves, loads and exports."""

from __future__ import annotations

import pytest
import torch

from recsys_peft.adapters.freeze import FrozenWeightsChanged, checksums
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.export.exporter import weights_hash
from recsys_peft.export.model import ExportedModel
from recsys_peft.export.tuned import export_tuned_segment
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.registry.formats import BaseModelMismatch
from recsys_peft.registry.tuned import load_tuned, save_tuned
from recsys_peft.training import finetune as finetune_module
from recsys_peft.training.finetune import (
    FinetuneConfig, SegmentAdapter, finetune_segment, stack_adapters, train_adapter,
)
from recsys_peft.training.freezing import FinetuneMethod, apply_tuned, trainable_names, tuned_state
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import sasrec_config

LARGEST_SEGMENT = 13   # M:56+, 19 users in the session log
TRAIN = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2, patience=2)
TWO_TOWER_EXPECTED = {
    "top_layers:1": ["user_out.base.weight", "user_out.base.bias"],
    "top_layers:2": ["user_hidden.base.weight", "user_hidden.base.bias", "user_out.base.weight",
                     "user_out.base.bias"],
    "bias_norm": ["user_hidden.base.bias", "user_out.base.bias"],
}


@pytest.fixture(scope="module")
def sasrec_base(snapshot):
    torch.manual_seed(0)
    config = sasrec_config(snapshot, embedding_dim=16, num_heads=2, ffn_dim=32, max_length=10, num_layers=2)
    return SASRecModel(config).eval()


@pytest.fixture
def keep_last_epoch(monkeypatch):
    """Make every epoch score better than the one before, so training keeps the last epoch's weights.

    Otherwise a tiny segment whose validation score never improves keeps the base weights, and
    the test could not tell a frozen parameter from a trainable one that was restored.
    """
    original = finetune_module.fit_loss

    def fit_keeping_last(model, parameters, num_examples, batch_loss, validate, config, on_epoch=None):
        scores = iter(range(config.epochs + 1))
        return original(model, parameters, num_examples, batch_loss, lambda: float(next(scores)), config, on_epoch)

    monkeypatch.setattr(finetune_module, "fit_loss", fit_keeping_last)


def _train(base, snapshot, method: str):
    users = snapshot.segments.members(LARGEST_SEGMENT)
    return train_adapter(base, snapshot, users, LoRAConfig(), TRAIN, seed=0, method=FinetuneMethod.parse(method))


@pytest.mark.parametrize("method", sorted(TWO_TOWER_EXPECTED))
def test_two_tower_trains_exactly_its_parameters(base_model, snapshot, method, keep_last_epoch):
    before = checksums(base_model)
    trained = _train(base_model, snapshot, method)
    after = checksums(trained.model)
    changed = sorted(name for name in before if before[name] != after[name])

    assert changed == sorted(TWO_TOWER_EXPECTED[method])
    assert trained.trainable_parameters == sum(p.numel() for n, p in base_model.named_parameters()
                                               if n in TWO_TOWER_EXPECTED[method])


@pytest.mark.parametrize("method", ["top_layers:1", "bias_norm"])
def test_sasrec_trains_exactly_its_parameters(sasrec_base, snapshot, method, keep_last_epoch):
    names = trainable_names(sasrec_base, FinetuneMethod.parse(method))
    before = checksums(sasrec_base)
    after = checksums(_train(sasrec_base, snapshot, method).model)
    changed = sorted(name for name in before if before[name] != after[name])

    assert changed == sorted(names)
    assert "ec.embeddings.t_item.weight" not in names
    if method == "top_layers:1":
        assert all(n.startswith(("blocks.1.", "final_norm.")) for n in names)
        assert "blocks.1.ffn.inner.base.weight" in names
    else:
        assert all(n.endswith(".bias") or "norm." in n for n in names)
        assert "blocks.0.attention_norm.weight" in names


def test_frozen_change_is_detected(base_model, snapshot, monkeypatch):
    original = finetune_module.fit_loss

    def fit_and_touch(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        with torch.no_grad():
            model.user_hidden.base.weight.add_(1.0)
        return result

    monkeypatch.setattr(finetune_module, "fit_loss", fit_and_touch)
    with pytest.raises(FrozenWeightsChanged, match="user_hidden.base.weight"):
        _train(base_model, snapshot, "top_layers:1")


@pytest.mark.parametrize("text", ["top_layers", "top_layers:0", "top_layers:x", "bias", "lora:2"])
def test_method_rejects_bad_text(text):
    with pytest.raises(ValueError, match=f"got {text!r}"):
        FinetuneMethod.parse(text)


def test_top_layers_beyond_model_rejected(base_model):
    with pytest.raises(ValueError, match="top_layers:3 asks for more layers than the two-tower user tower has"):
        trainable_names(base_model, FinetuneMethod.parse("top_layers:3"))


def test_finetune_segment_records_method(base_model, snapshot):
    config = FinetuneConfig(train=TRAIN, min_users=2, keep_confidence=0.0, method="bias_norm")
    tuned = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, config)

    assert tuned.method == "bias_norm"
    assert tuned.rank is None
    assert tuned.trainable_parameters == 32 + 16   # the biases of user_hidden and user_out
    if tuned.state is not None:
        assert sorted(tuned.state) == sorted(TWO_TOWER_EXPECTED["bias_norm"])


def test_small_segment_falls_back(base_model, snapshot):
    config = FinetuneConfig(train=TRAIN, min_users=1000, method="top_layers:1")
    tuned = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, config)

    assert tuned.state is None
    assert tuned.method == "top_layers:1"
    assert tuned.reason == "below min_users=1000"


def test_tuned_segment_saves_loads_exports(base_model, snapshot, store, tmp_path, keep_last_epoch):
    names = TWO_TOWER_EXPECTED["top_layers:1"]
    trained = _train(base_model, snapshot, "top_layers:1")
    tuned = SegmentAdapter(snapshot.segments.names[LARGEST_SEGMENT], LARGEST_SEGMENT, 19, 100, 0.1, 0.2,
                           tuned_state(trained.model, names), "beats base on validation", method="top_layers:1")

    # Registry files: the changed tensors only, bound to the base model.
    folder = tmp_path / "tuned"
    save_tuned(tuned, folder, weights_hash(base_model), snapshot.log.vocabulary_version, snapshot.snapshot_id)
    model, meta = load_tuned(folder, base_model, snapshot.log.vocabulary_version)
    assert meta["method"] == "top_layers:1"
    assert sorted(meta["tensors"]) == sorted(tuned.state)
    expected = apply_tuned(base_model, tuned.state)
    assert checksums(model) == checksums(expected)
    with pytest.raises(BaseModelMismatch, match="was trained on base model"):
        load_tuned(folder, model, snapshot.log.vocabulary_version)

    # Export: one model for the segment, scored like any other export.
    manifest = export_tuned_segment(base_model, tuned, snapshot, tmp_path / "export", store.store_dir)
    assert manifest["parity"]["passed"]
    assert manifest["finetune_method"] == "top_layers:1"
    assert manifest["tuned_segment"] == snapshot.segments.names[LARGEST_SEGMENT]
    exported = ExportedModel.load(tmp_path / "export")
    assert exported.model.num_segments == 0

    with pytest.raises(ValueError, match="tuned by layer freezing, not LoRA, so they cannot be stacked"):
        stack_adapters(base_model, [tuned], 1, LoRAConfig())


def test_finetune_config_rejects_bad_method():
    with pytest.raises(ValueError, match="fine-tuning method must be one of"):
        FinetuneConfig(method="prefix")
    assert FinetuneConfig().method == "lora"

