from pathlib import Path

import pytest

from recsys_peft.config import PRETRAIN_DEFAULTS, PipelineConfig
from recsys_peft.config_file import ConfigError, load_config, parse_overrides, to_yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "configs" / "movielens.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_file_equals_defaults():
    assert load_config(DEMO) == PipelineConfig()


def test_partial_section_keeps_family_defaults(tmp_path):
    path = write(tmp_path, "model: sasrec\npretrain:\n  epochs: 7\n")

    config = load_config(path)

    assert config.pretrain.epochs == 7
    assert config.pretrain.batch_size == PRETRAIN_DEFAULTS["sasrec"].batch_size
    assert config.pretrain.patience == PRETRAIN_DEFAULTS["sasrec"].patience


def test_seed_reseeds_unless_section_sets_it(tmp_path):
    path = write(tmp_path, "seed: 4\nfinetune:\n  train:\n    seed: 9\n")

    config = load_config(path)

    assert config.seed == 4
    assert config.pretrain.seed == 4
    assert config.finetune.train.seed == 9


def test_command_line_wins_over_file(tmp_path):
    path = write(tmp_path, "top_k: 20\nfinetune:\n  lora: {r: 8, alpha: 16.0}\n")

    config = load_config(path, ["top_k=5", "finetune.lora.r=4", "model_overrides={hidden_dim: 64}"])

    assert config.top_k == 5
    assert config.finetune.lora.r == 4
    assert config.finetune.lora.alpha == 16.0
    assert config.model_overrides == {"hidden_dim": 64}


@pytest.mark.parametrize("text, message", [
    ("modle: sasrec\n", r"config file .*pipeline\.yaml: unknown key modle; did you mean model\?"),
    ("pretrain:\n  epoch: 3\n", r"config file .*pipeline\.yaml: unknown key pretrain\.epoch; did you mean pretrain\.epochs\?"),
    ("finetune:\n  lora:\n    rank: 3\n", r"unknown key finetune\.lora\.rank; did you mean finetune\.lora\.r\?"),
    ("top_k: ten\n", r"top_k must be an integer, got 'ten'"),
    ("pretrain: 3\n", r"pretrain must be a mapping of TrainConfig keys, got 3"),
    ("model: gpt\n", r"model must be one of \['sasrec', 'two_tower'\], got 'gpt'"),
    ("- a\n- b\n", r"expected a mapping of keys at the top level, got list"),
])
def test_file_errors_name_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "model: two_tower\ntop_k: [1, 2\n")

    with pytest.raises(ConfigError, match=rf"config file {path}: invalid YAML at line 3 column 1"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*absent\.yaml"):
        load_config(tmp_path / "absent.yaml")


def test_override_errors_name_command_line():
    with pytest.raises(ConfigError, match=r"command line: unknown key pretrain\.epoch; did you mean pretrain\.epochs\?"):
        load_config(None, ["pretrain.epoch=3"])
    with pytest.raises(ConfigError, match=r"override 'epochs' must look like KEY=VALUE"):
        load_config(None, ["epochs"])


def test_overrides_parse_as_yaml():
    assert parse_overrides(["a.b=1", "a.c=0.5", "d=true", "e=[x, y]", "f="]) == {
        "a": {"b": 1, "c": 0.5}, "d": True, "e": ["x", "y"], "f": ""}


def test_yaml_round_trip(tmp_path):
    config = load_config(None, ["model=sasrec", "seed=3", "finetune.lora.target_modules=[user_out]"])

    again = load_config(write(tmp_path, to_yaml(config)))

    assert again == config


def test_reference_lists_every_key():
    import dataclasses

    def keys(obj, prefix=""):
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            if dataclasses.is_dataclass(value):
                yield from keys(value, f"{prefix}{field.name}.")
            else:
                yield f"{prefix}{field.name}"

    reference = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")

    missing = [key for key in keys(PipelineConfig()) if f"| `{key}` |" not in reference]
    assert missing == []
