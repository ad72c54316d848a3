"""The registry: publish, promote, roll back and load base models and adapters on any fsspec URL."""

import json
import uuid

import fsspec
import numpy as np
import pytest
import torch

from recsys_peft.adapters.lora import LoRAConfig, adapter_layers, adapter_state
from recsys_peft.registry.store import BaseModelMismatch, Registry, RegistryError, base_id_of
from recsys_peft.training.finetune import adapter_slots, stack_adapters, with_adapters

SNAPSHOT_META = {"vocabulary_version": "u120-i150-test", "training_data_snapshot": "snapshot-1"}


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path) -> Registry:
    if request.param == "local":
        return Registry(tmp_path / "registry")
    return Registry(f"memory://registry-{uuid.uuid4().hex}")


@pytest.fixture
def layers(base_model, tiny_lora) -> list[str]:
    return sorted(adapter_layers(stack_adapters(base_model, [], 1, tiny_lora)))


def publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers) -> tuple[str, dict[str, str]]:
    base_id = registry.publish_base(base_model, snapshot.segments.names, SNAPSHOT_META)
    versions = {a.segment: registry.publish_adapter(a, base_id, tiny_lora, layers) for a in adapters}
    return base_id, versions


def other_base(base_model):
    """A copy of the base model with one weight changed, so it has another hash."""
    model = with_adapters(base_model, 0, LoRAConfig(r=4, alpha=8.0)).eval()
    with torch.no_grad():
        model.user_out.base.bias.add_(0.5)
    return model


def test_release_loads_same_scores(registry, base_model, snapshot, make_adapters, tiny_lora, layers, final_batch):
    adapters = make_adapters(base_model, (1, 6, 13))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)

    release = registry.promote(base_id, versions)
    loaded = registry.load_release()

    expected = stack_adapters(base_model, adapters, len(snapshot.segments.names), tiny_lora)
    slots = adapter_slots(snapshot, adapters)
    with torch.no_grad():
        assert torch.equal(loaded.adapted.user_embeddings(final_batch(slots)),
                           expected.user_embeddings(final_batch(slots)))
    assert loaded.release == release
    assert registry.current() == release
    assert sum(a.used for a in loaded.adapters) == 3
    assert base_id == base_id_of("two_tower", loaded.base_meta["weights_hash"])


def test_adapter_metadata_fields(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (4,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)

    meta = registry.adapter_meta(base_id, adapters[4].segment, versions[adapters[4].segment])
    fallback = registry.adapter_meta(base_id, adapters[0].segment, versions[adapters[0].segment])

    assert meta["segment"] == adapters[4].segment
    assert meta["base_model_id"] == base_id
    assert meta["base_model_hash"] == registry.base_meta(base_id)["weights_hash"]
    assert meta["vocabulary_version"] == "u120-i150-test"
    assert meta["training_data_snapshot"] == "snapshot-1"
    assert (meta["rank"], meta["alpha"], meta["layers"]) == (4, 8.0, ["lookup_adapter", "user_hidden", "user_out"])
    assert meta["kept"] is True
    assert set(meta["metrics"]) == {"base_valid_ndcg@10", "valid_ndcg@10"}
    assert meta["created_at"]
    assert 0 < meta["weights_bytes"] < registry.base_meta(base_id)["weights_bytes"] / 5
    assert fallback["kept"] is False
    assert fallback["weights_bytes"] == 0


def test_sizes_report_bytes(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (2,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)

    sizes = registry.sizes(base_id, versions)

    assert sizes["base_bytes"] == registry.base_meta(base_id)["weights_bytes"]
    assert sizes["adapter_bytes"][adapters[2].segment] > 0
    assert sizes["adapter_bytes"][adapters[3].segment] == 0


def test_publish_same_base_twice(registry, base_model, snapshot):
    first = registry.publish_base(base_model, snapshot.segments.names, SNAPSHOT_META)
    second = registry.publish_base(base_model, snapshot.segments.names, SNAPSHOT_META)

    assert first == second
    assert registry.list_bases() == [first]


def test_promote_needs_every_segment(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    del versions["F:<18"]

    with pytest.raises(RegistryError, match=r"needs one adapter record per segment of the base: "
                                            r"missing \['F:<18'\], unexpected \[\]"):
        registry.promote(base_id, versions)
    assert registry.current() is None


def test_failed_promotion_keeps_current(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    release = registry.promote(base_id, versions)

    with pytest.raises(RegistryError, match=r"adapter version 'no-such-version' of segment 'F:<18' not found"):
        registry.promote(base_id, {**versions, "F:<18": "no-such-version"})

    assert registry.current() == release
    assert registry.history() == [release.release_id]


def test_adapter_other_base_rejected(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (5,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    other = registry.publish_base(other_base(base_model), snapshot.segments.names, SNAPSHOT_META)
    segment = adapters[5].segment
    own_hash = registry.base_meta(base_id)["weights_hash"]
    other_hash = registry.base_meta(other)["weights_hash"]

    with pytest.raises(BaseModelMismatch, match=rf"trained on base model {own_hash[:12]}, not on {other_hash[:12]}"):
        registry.load_adapter(base_id, segment, versions[segment], other_hash, SNAPSHOT_META["vocabulary_version"])


def test_adapter_other_vocabulary_rejected(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (5,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    segment = adapters[5].segment

    with pytest.raises(BaseModelMismatch, match=r"trained on vocabulary u120-i150-test, not on u121-i150-new"):
        registry.load_adapter(base_id, segment, versions[segment], registry.base_meta(base_id)["weights_hash"],
                              "u121-i150-new")


def test_release_rejects_copied_adapter(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    # An adapter file copied under another base model's folder is still bound to its own base.
    adapters = make_adapters(base_model, (5,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    other = registry.publish_base(other_base(base_model), snapshot.segments.names, SNAPSHOT_META)
    other_versions = {a.segment: registry.publish_adapter(a, other, tiny_lora, layers) for a in adapters}
    segment = adapters[5].segment
    slug = f"05-{segment.replace(':', '_')}"
    source = registry._path("adapters", base_id, slug, versions[segment], "adapter.json")
    target = registry._path("adapters", other, slug, other_versions[segment], "adapter.json")
    registry.fs.pipe_file(target, registry.fs.cat_file(source))

    with pytest.raises(BaseModelMismatch, match=r"trained on base model .{12}, not on .{12}"):
        registry.promote(other, other_versions)


def test_rollback_restores_previous(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    first = registry.promote(base_id, versions)
    newer = make_adapters(base_model, (1, 2))[2]
    second = registry.promote_adapter(newer.segment, registry.publish_adapter(newer, base_id, tiny_lora, layers))

    assert registry.history() == [second.release_id, first.release_id]
    rolled = registry.rollback()

    assert rolled == first
    assert registry.current() == first
    assert registry.history() == [first.release_id]
    assert sorted(registry.list_releases()) == sorted([first.release_id, second.release_id])


def test_promote_adapter_changes_one(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)
    registry.promote(base_id, versions)
    newer = make_adapters(base_model, (3,))[3]
    version = registry.publish_adapter(newer, base_id, tiny_lora, layers)

    release = registry.promote_adapter(newer.segment, version)

    changed = {s for s in release.adapters if release.adapters[s] != versions[s]}
    assert changed == {newer.segment}
    assert registry.list_adapters(base_id, newer.segment) == sorted([versions[newer.segment], version])


def test_rollback_without_history(registry):
    with pytest.raises(RegistryError, match=r"cannot roll back 1 release\(s\): registry .* has 0 earlier"):
        registry.rollback()


def test_promote_adapter_without_release(registry):
    with pytest.raises(RegistryError, match=r"has no promoted release; promote a base model first"):
        registry.promote_adapter("F:<18", "v1")


def test_promote_latest_needs_records(registry, base_model, snapshot):
    base_id = registry.publish_base(base_model, snapshot.segments.names, SNAPSHOT_META)

    with pytest.raises(RegistryError, match=r"segment 'F:<18' has no adapter record under base model"):
        registry.promote_latest(base_id)


def test_unknown_segment_rejected(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    base_id = registry.publish_base(base_model, snapshot.segments.names[:3], SNAPSHOT_META)
    adapter = make_adapters(base_model, (5,))[5]

    with pytest.raises(RegistryError, match=r"segment 'F:50-55' is not a segment of base model"):
        registry.publish_adapter(adapter, base_id, tiny_lora, layers)


def test_current_pointer_is_one_file(tmp_path, base_model, snapshot, make_adapters, tiny_lora, layers):
    registry = Registry(tmp_path / "registry")
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)

    release = registry.promote(base_id, versions)

    pointer = json.loads((tmp_path / "registry" / "CURRENT.json").read_text())
    assert pointer["release_id"] == release.release_id
    assert not [p for p in (tmp_path / "registry").iterdir() if p.name.endswith(".tmp")]


def test_weights_are_safetensors(registry, base_model, snapshot, make_adapters, tiny_lora, layers):
    adapters = make_adapters(base_model, (1,))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, tiny_lora, layers)

    files = registry.fs.find(registry.root)

    suffixes = {f.rsplit(".", 1)[-1] for f in files}
    assert suffixes == {"json", "safetensors"}
    assert fsspec.core.url_to_fs(registry.url)[0] is registry.fs


def test_release_with_lookup_adapters(tmp_path, base_model, snapshot, make_adapters, final_batch):
    # Adapters with the lookup target and two ranks stack back to the scores they had.
    lora = LoRAConfig(r=4, alpha=8.0, target_modules=("lookup_adapter", "user_hidden", "user_out"))
    registry = Registry(tmp_path / "registry")
    probe = with_adapters(base_model, 1, lora.with_rank(2))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in adapter_layers(probe).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)
    adapters = make_adapters(base_model, ())
    adapters[7].state = adapter_state(probe, 0)
    adapters[7].rank, adapters[7].alpha = 2, 8.0
    layers = sorted(adapter_layers(probe))
    base_id, versions = publish_all(registry, base_model, snapshot, adapters, lora, layers)
    registry.promote(base_id, versions)

    loaded = registry.load_release()

    slots = np.where(snapshot.segments.user_segments == 7, 7, -1)
    single = np.where(snapshot.segments.user_segments == 7, 0, -1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.adapted.user_embeddings(final_batch(slots)),
                                   probe.eval().user_embeddings(final_batch(single)), atol=1e-6, rtol=1e-5)
