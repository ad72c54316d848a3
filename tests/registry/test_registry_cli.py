"""``recsys-peft registry``: list, promote and roll back from the command line."""

import json

import pytest
from typer.testing import CliRunner

from recsys_peft.adapters.lora import adapter_layers
from recsys_peft.cli.registry import app
from recsys_peft.registry.store import Registry
from recsys_peft.training.finetune import stack_adapters

runner = CliRunner()


@pytest.fixture
def published(tmp_path, base_model, snapshot, make_adapters, tiny_lora) -> tuple[Registry, str]:
    registry = Registry(tmp_path / "registry")
    base_id = registry.publish_base(base_model, snapshot.segments.names,
                                    {"vocabulary_version": "u120-i150-test", "training_data_snapshot": "s1"})
    layers = sorted(adapter_layers(stack_adapters(base_model, [], 1, tiny_lora)))
    for adapter in make_adapters(base_model, (1, 6)):
        registry.publish_adapter(adapter, base_id, tiny_lora, layers)
    return registry, base_id


def test_cli_promote_then_list(published):
    registry, base_id = published

    promoted = runner.invoke(app, ["promote", registry.url, "--base", base_id, "--note", "first"])
    listed = runner.invoke(app, ["list", registry.url])

    assert promoted.exit_code == 0, promoted.output
    release = json.loads(promoted.output)
    assert release["base_id"] == base_id
    assert release["note"] == "first"
    assert listed.exit_code == 0, listed.output
    assert f"base {base_id} segments=14" in listed.output
    assert f"release {release['release_id']} base={base_id} adapters=2/14 current" in listed.output


def test_cli_list_adapters(published):
    registry, base_id = published

    result = runner.invoke(app, ["list", registry.url, "--base", base_id])

    assert result.exit_code == 0, result.output
    assert "F:18-24" in result.output
    assert result.output.count("kept=True") == 2
    assert result.output.count("kept=False") == 12


def test_cli_promote_segment_then_rollback(published, base_model, make_adapters, tiny_lora):
    registry, base_id = published
    runner.invoke(app, ["promote", registry.url, "--base", base_id])
    newer = make_adapters(base_model, (3,))[3]
    version = registry.publish_adapter(newer, base_id, tiny_lora, ["user_hidden", "user_out"])
    first = registry.current()

    promoted = runner.invoke(app, ["promote", registry.url, "--segment", newer.segment,
                                   "--version", version])
    rolled = runner.invoke(app, ["rollback", registry.url])

    assert promoted.exit_code == 0, promoted.output
    assert rolled.exit_code == 0, rolled.output
    assert rolled.output.strip() == f"current release {first.release_id} base={base_id}"
    assert registry.current() == first


@pytest.mark.parametrize(("arguments", "message", "code"), [
    (["promote"], "pass either --base, or --segment with --version", 2),
    (["promote", "--segment", "F:<18"], "--segment needs --version", 2),
    (["rollback"], "cannot roll back 1 release(s)", 1),
    (["promote", "--base", "two_tower-000000000000"], "base model 'two_tower-000000000000' not found", 1),
])
def test_cli_errors(published, arguments, message, code):
    registry, _ = published

    result = runner.invoke(app, [arguments[0], registry.url, *arguments[1:]])

    assert result.exit_code == code
    assert message in result.output


def test_cli_promote_twice_adds_no_release(published):
    registry, base_id = published

    first = runner.invoke(app, ["promote", registry.url, "--base", base_id])
    second = runner.invoke(app, ["promote", registry.url, "--base", base_id])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "is already current with these versions; nothing promoted" in second.stderr
    assert len(registry.list_releases()) == 1
    assert registry.history() == [json.loads(first.stdout)["release_id"]]
