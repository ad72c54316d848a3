import pytest
import torch

import recsys_peft.training.finetune as finetune_module
from recsys_peft.adapters.freeze import (
    FrozenWeightsChanged, assert_unchanged, checksums, freeze_all_but_adapters, tensor_checksum,
)
from recsys_peft.training.finetune import FinetuneConfig, finetune_segment, with_adapters
from recsys_peft.training.loop import TrainConfig

LARGEST_SEGMENT = 13  # M:56+, 19 users in the session log
TABLES = ("ebc.embedding_bags.t_user.weight", "ebc.embedding_bags.t_item.weight",
          "ebc.embedding_bags.t_tag.weight")


@pytest.fixture
def finetune_config(tiny_lora) -> FinetuneConfig:
    return FinetuneConfig(lora=tiny_lora, train=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2, patience=2),
                          min_users=2)


def frozen_part(sums: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in sums.items() if ".lora_" not in name}


def test_checksum_sees_sign_bit():
    # torch.equal treats 0.0 and -0.0 as equal, but the checksum compares bits.
    assert torch.equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert tensor_checksum(torch.tensor([0.0])) != tensor_checksum(torch.tensor([-0.0]))
    assert tensor_checksum(torch.tensor([1.5, 2.0])) == tensor_checksum(torch.tensor([1.5, 2.0]))


def test_freeze_leaves_only_lora(base_model, tiny_lora):
    model = with_adapters(base_model, 2, tiny_lora)

    trainable = freeze_all_but_adapters(model)

    trainable_names = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable_names == ["lookup_adapter.lora_A", "lookup_adapter.lora_B", "user_hidden.lora_A",
                               "user_hidden.lora_B", "user_out.lora_A", "user_out.lora_B"]
    assert {id(p) for p in trainable} == {id(p) for n, p in model.named_parameters() if n in trainable_names}


def test_assert_unchanged_names_parameter(base_model):
    before = checksums(base_model)
    with torch.no_grad():
        base_model.ebc.embedding_bags["t_item"].weight[3, 0] += 1e-3
    after = checksums(base_model)

    with pytest.raises(FrozenWeightsChanged, match=r"\['ebc\.embedding_bags\.t_item\.weight'\]"):
        assert_unchanged(before, after)


def test_assert_unchanged_missing_name(base_model):
    before = checksums(base_model)
    after = dict(before)
    del after["item_mlp.0.bias"]

    with pytest.raises(FrozenWeightsChanged, match=r"\['item_mlp\.0\.bias'\]"):
        assert_unchanged(before, after)


def test_assert_unchanged_passes_equal(base_model):
    assert_unchanged(checksums(base_model), checksums(base_model))


def test_finetune_keeps_frozen_bits(base_model, snapshot, finetune_config, monkeypatch):
    base_sums = frozen_part(checksums(base_model))
    real_fit = finetune_module.fit_loss
    seen = {}

    def recording_fit(model, parameters, *args, **kwargs):
        seen["trainable"] = sorted(n for n, p in model.named_parameters() if any(p is q for q in parameters))
        seen["result"] = real_fit(model, parameters, *args, **kwargs)
        seen["model"] = model
        return seen["result"]

    monkeypatch.setattr(finetune_module, "fit_loss", recording_fit)
    adapter = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, finetune_config)

    tuned_sums = frozen_part(checksums(seen["model"]))
    assert adapter.users == 19
    assert seen["result"].steps > 0
    assert seen["trainable"] == ["lookup_adapter.lora_A", "lookup_adapter.lora_B", "user_hidden.lora_A",
                                 "user_hidden.lora_B", "user_out.lora_A", "user_out.lora_B"]
    assert set(TABLES) <= set(tuned_sums)
    assert tuned_sums == base_sums
    # The base model handed in is not touched either.
    assert frozen_part(checksums(base_model)) == base_sums


def test_finetune_detects_moved_table(base_model, snapshot, finetune_config, monkeypatch):
    real_fit = finetune_module.fit_loss

    def fit_then_edit_table(model, parameters, *args, **kwargs):
        result = real_fit(model, parameters, *args, **kwargs)
        with torch.no_grad():
            model.ebc.embedding_bags["t_user"].weight[0, 0] += 1.0
        return result

    monkeypatch.setattr(finetune_module, "fit_loss", fit_then_edit_table)

    with pytest.raises(FrozenWeightsChanged, match=r"\['ebc\.embedding_bags\.t_user\.weight'\]"):
        finetune_segment(base_model, snapshot, LARGEST_SEGMENT, finetune_config)
