import pytest
import torch
from safetensors.torch import load_file, save_file

from recsys_peft.export.exporter import weights_hash
from recsys_peft.registry.artifacts import (
    load_adapter, load_base_model, save_adapter, save_base_model, segment_slug,
)
from recsys_peft.training.finetune import stack_adapters

BASE_HASH = "a" * 12 + "0" * 52
OTHER_HASH = "b" * 12 + "0" * 52
VOCABULARY = "u120-i150-000000000000"


@pytest.fixture
def kept_adapter(base_model, make_adapters):
    return make_adapters(base_model, (4,))[4]


@pytest.fixture
def saved_adapter(tmp_path, kept_adapter, base_model, tiny_lora):
    folder = tmp_path / "adapter"
    save_adapter(kept_adapter, folder, tiny_lora, BASE_HASH, VOCABULARY, "snapshot-1",
                 stack_adapters(base_model, [], 1, tiny_lora))
    return folder


def test_base_model_round_trip(tmp_path, base_model, snapshot, final_batch):
    folder = tmp_path / "base"

    saved_hash = save_base_model(base_model, folder, {"vocabulary_version": snapshot.log.vocabulary_version})
    loaded, meta = load_base_model(folder)

    assert saved_hash == weights_hash(base_model)
    assert weights_hash(loaded) == saved_hash
    assert meta["weights_hash"] == saved_hash
    assert meta["vocabulary_version"] == snapshot.log.vocabulary_version
    assert meta["config"] == base_model.config.to_dict()
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    with torch.no_grad():
        assert torch.equal(loaded.user_embeddings(final_batch()), base_model.user_embeddings(final_batch()))


def test_base_model_missing_tensor(tmp_path, base_model):
    folder = tmp_path / "base"
    save_base_model(base_model, folder, {})
    state = load_file(folder / "model.safetensors")
    del state["user_out.base.bias"]
    save_file(state, str(folder / "model.safetensors"))

    with pytest.raises(ValueError, match=r"model\.safetensors does not match model\.json: "
                                         r"missing \['user_out\.base\.bias'\], unexpected \[\]"):
        load_base_model(folder)


def test_adapter_round_trip(saved_adapter, kept_adapter):
    state, meta = load_adapter(saved_adapter, BASE_HASH, VOCABULARY)

    assert state.keys() == kept_adapter.state.keys()
    for name, tensor in kept_adapter.state.items():
        assert torch.equal(state[name], tensor), name
    assert meta["kept"] is True
    assert meta["segment"] == kept_adapter.segment
    assert meta["rank"] == 4
    assert meta["layers"] == ["lookup_adapter", "user_hidden", "user_out"]


def test_fallback_adapter_has_no_weights(tmp_path, base_model, make_adapters, tiny_lora):
    adapter = make_adapters(base_model, ())[2]
    folder = tmp_path / "adapter"
    save_adapter(adapter, folder, tiny_lora, BASE_HASH, VOCABULARY, "snapshot-1",
                 stack_adapters(base_model, [], 1, tiny_lora))

    state, meta = load_adapter(folder, BASE_HASH, VOCABULARY)

    assert state is None
    assert meta["kept"] is False
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.json"]


def test_adapter_other_base_rejected(saved_adapter):
    with pytest.raises(ValueError, match=r"trained on base model aaaaaaaaaaaa, not on bbbbbbbbbbbb"):
        load_adapter(saved_adapter, OTHER_HASH, VOCABULARY)


def test_adapter_other_vocabulary_rejected(saved_adapter):
    with pytest.raises(ValueError, match=r"trained on vocabulary u120-i150-000000000000, not on u121-i150-ffff"):
        load_adapter(saved_adapter, BASE_HASH, "u121-i150-ffff")


def test_segment_slug_safe_name():
    assert segment_slug(3, "F:35-44") == "03-F_35-44"
    assert segment_slug(12, "M:<18") == "12-M_18"
