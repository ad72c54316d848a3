from dataclasses import replace
from pathlib import Path

import pytest

from recsys_peft.config import PipelineConfig
from recsys_peft.config_check import check_config, check_model_overrides
from recsys_peft.config_file import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(monkeypatch) -> PipelineConfig:
    monkeypatch.chdir(ROOT)
    return PipelineConfig()


def test_defaults_pass(config):
    check_config(config)


@pytest.mark.parametrize("model, overrides, message", [
    ("two_tower", {"hiden_dim": 8}, r"model_overrides\.hiden_dim is not a setting of model two_tower; "
                                    r"did you mean model_overrides\.hidden_dim\?"),
    ("sasrec", {"hidden_dim": 8}, r"model_overrides\.hidden_dim is not a setting of model sasrec"),
    ("two_tower", {"num_items": 8}, r"num_items is sized from the data and cannot be set"),
    ("two_tower", {"history_length": 4, "recent_length": 5}, r"recent_length must be in \[1, history_length=4\]"),
    ("sasrec", {"embedding_dim": 10, "num_heads": 3}, r"must be divisible by num_heads=3"),
])
def test_model_overrides_checked_for_family(model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_model_overrides(model, overrides)


def test_missing_segment_spec(config):
    with pytest.raises(ConfigError, match=r"segment_spec: file not found: features/segments/absent\.yaml"):
        check_config(replace(config, segment_spec="features/segments/absent.yaml"))


def test_broken_segment_spec_names_file(config, tmp_path):
    spec = tmp_path / "segments.yaml"
    spec.write_text("name: x\nsegments: [a\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=rf"segment_spec.* {spec}: invalid YAML at line 3"):
        check_config(replace(config, segment_spec=str(spec)))


def test_invalid_source_spec(config, tmp_path):
    spec = tmp_path / "source.yaml"
    spec.write_text("name: x\nformat: csv\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"source_spec: .*'interactions' is missing"):
        check_config(replace(config, source_spec=str(spec)))


def test_missing_raw_dir_without_fetch(config, tmp_path):
    bad = replace(config, fetch_movielens=False, raw_dir=str(tmp_path / "absent"))

    with pytest.raises(ConfigError, match=r"raw_dir: folder not found: .*absent"):
        check_config(bad)
    check_config(bad, need_raw=False)


def test_user_attribute_edges_checked(config):
    with pytest.raises(ConfigError, match=r"user_attributes\.age must be a list of numeric bin edges"):
        check_config(replace(config, user_attributes={"age": ["young"]}))


def test_unknown_adapter_target_caught(config):
    lora = replace(config.finetune.lora, target_modules=("nope",))
    bad = replace(config, finetune=replace(config.finetune, lora=lora))

    with pytest.raises(ConfigError, match=r"finetune\.lora\.target_modules: LoRA target 'nope' matches no adapter"):
        check_config(bad)


def test_unsorted_bins_caught(config):
    bad = replace(config, user_attributes={"age": [50, 18]})

    with pytest.raises(ConfigError, match=r"user_attributes\.age bin edges must increase, got \[50, 18\]"):
        check_config(bad)


def test_segment_attribute_not_in_source_spec(config, tmp_path):
    segments = tmp_path / "country.yaml"
    segments.write_text("name: country\nkeys:\n  - attribute: country\n")
    with pytest.raises(ConfigError, match=r"attributes \['country'\] are not mapped by source_spec "
                                          r"features/movielens_100k\.yaml \(its users\.attributes: "
                                          r"\['age', 'gender', 'occupation'\]\)"):
        check_config(replace(config, segment_spec=str(segments)))
