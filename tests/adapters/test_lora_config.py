"""LoRAConfig: rank by segment size, targets, and the JSON round trip."""

import pytest

from recsys_peft.adapters.lora import LoRAConfig


def test_rank_for_without_pairs():
    assert LoRAConfig(r=8).rank_for(3) == 8
    assert LoRAConfig(r=8).rank_for(10_000) == 8


def test_rank_for_follows_size():
    config = LoRAConfig(r=8, segment_ranks=[[0, 2], [50, 4], [200, 8]])

    assert config.segment_ranks == ((0, 2), (50, 4), (200, 8))
    assert config.rank_for(10) == 2
    assert config.rank_for(50) == 4
    assert config.rank_for(199) == 4
    assert config.rank_for(5_000) == 8


def test_rank_below_first_threshold():
    assert LoRAConfig(r=8, segment_ranks=((100, 4), (500, 8))).rank_for(20) == 4


def test_with_rank_keeps_alpha():
    config = LoRAConfig(r=8, alpha=16.0, dropout=0.1, target_modules=("user_out",), segment_ranks=((0, 2),))

    lowered = config.with_rank(2)

    assert (lowered.r, lowered.alpha, lowered.dropout) == (2, 16.0, 0.1)
    assert lowered.target_modules == ("user_out",)
    assert lowered.scaling == 8.0


def test_config_dict_round_trip():
    config = LoRAConfig(r=4, alpha=8.0, dropout=0.05, target_modules=["user_hidden", "lookup_adapter"],
                        segment_ranks=[(0, 2), (100, 4)])

    assert LoRAConfig.from_dict(config.to_dict()) == config
    assert LoRAConfig.from_dict(LoRAConfig().to_dict()) == LoRAConfig()


@pytest.mark.parametrize(("arguments", "message"), [
    ({"r": 4, "segment_ranks": [(0, 8)]}, r"segment_ranks\[0\] has rank 8, expected 1 to r=4"),
    ({"segment_ranks": [(0, 0)]}, r"segment_ranks\[0\] has rank 0, expected 1 to r=8"),
    ({"segment_ranks": [(50, 2), (50, 4)]}, r"increasing min_users, got 50 then 50 at position 1"),
    ({"segment_ranks": [(50, 2, 1)]}, r"segment_ranks\[0\] must be a \(min_users, rank\) pair"),
    ({"target_modules": []}, r"target_modules must name at least one layer"),
])
def test_config_rejects_bad_schedule(arguments, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig(**arguments)


def test_config_from_dict_unknown_key():
    with pytest.raises(ValueError, match=r"unknown keys \['rank'\]"):
        LoRAConfig.from_dict({"rank": 4})
