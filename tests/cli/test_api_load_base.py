"""api.load_base rejects a config whose architecture differs from the saved base model's."""

import pytest

from recsys_peft import api
from recsys_peft.config import PipelineConfig
from recsys_peft.registry.artifacts import save_base_model

TINY = {"embedding_dim": 16, "hidden_dim": 32, "history_length": 10, "recent_length": 3}


@pytest.fixture
def saved_base(tmp_path, pretrained, snapshot):
    save_base_model(pretrained.model, tmp_path / "work" / "models" / "base",
                    {"vocabulary_version": snapshot.log.vocabulary_version})
    return tmp_path / "work"


def test_load_base_same_architecture(saved_base, snapshot):
    config = PipelineConfig(work_dir=str(saved_base), model_overrides=dict(TINY))

    base = api.load_base(config, snapshot)

    assert base.model.config.hidden_dim == 32


def test_load_base_other_hidden_dim_rejected(saved_base, snapshot):
    config = PipelineConfig(work_dir=str(saved_base), model_overrides={**TINY, "hidden_dim": 64})

    with pytest.raises(ValueError, match=r"was trained with hidden_dim 32 \(config: 64\); train again"):
        api.load_base(config, snapshot)


def test_load_base_other_family_rejected(saved_base, snapshot):
    config = PipelineConfig(work_dir=str(saved_base), model="sasrec")

    with pytest.raises(ValueError, match=r"is a two_tower model, but the config sets model 'sasrec'"):
        api.load_base(config, snapshot)
