import numpy as np

from recsys_peft.training.finetune import FinetuneConfig, adapter_slots, finetune_segment
from recsys_peft.training.loop import TrainConfig


def test_small_segment_gets_no_adapter(base_model, snapshot, tiny_lora):
    config = FinetuneConfig(lora=tiny_lora, train=TrainConfig(epochs=1, batch_size=32), min_users=50)

    adapter = finetune_segment(base_model, snapshot, 0, config)

    assert adapter.segment == snapshot.segments.names[0]
    assert adapter.users == int(np.sum(snapshot.segments.user_segments == 0))
    assert adapter.state is None
    assert not adapter.used
    assert adapter.reason == "below min_users=50"
    assert adapter.valid_ndcg == adapter.base_valid_ndcg


def test_slots_only_for_kept(snapshot, base_model, make_adapters):
    adapters = make_adapters(base_model, (0, 5))

    slots = adapter_slots(snapshot, adapters)

    segments = snapshot.segments.user_segments
    expected = np.where(np.isin(segments, [0, 5]), segments, -1)
    assert np.array_equal(slots, expected)
    assert slots.dtype == np.int64
