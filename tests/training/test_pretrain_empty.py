"""Pretraining refuses a split with nothing to train or validate on."""

import dataclasses

import numpy as np
import pytest

from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import EmptyTrainingData, pretrain


def test_pretrain_empty_split_raises(snapshot, tiny_config):
    split = snapshot.split
    empty_valid = dataclasses.replace(split.valid, users=np.array([], dtype=np.int64),
                                      items=np.array([], dtype=np.int64), positions=np.array([], dtype=np.int64))
    empty = dataclasses.replace(snapshot, split=dataclasses.replace(split, train_positions=np.array([], dtype=np.int64),
                                                                    valid=empty_valid))

    with pytest.raises(EmptyTrainingData, match=r"the split has 0 training events and 0 validation users"):
        pretrain(empty, tiny_config, TrainConfig(epochs=1))
