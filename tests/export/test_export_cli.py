"""``recsys-peft export``: a registry release to an export folder, with its parity check."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_peft.adapters.lora import adapter_layers
from recsys_peft.cli import app
from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES
from recsys_peft.export.model import ExportedModel
from recsys_peft.registry.store import Registry
from recsys_peft.training.finetune import stack_adapters

ROOT = Path(__file__).resolve().parents[2]
SEGMENT_SPEC = ROOT / "features" / "segments" / "gender_x_age.yaml"


@pytest.fixture
def work_dir(tmp_path, snapshot, pretrained, make_adapters, tiny_lora) -> Path:
    """A pipeline folder with a registry holding one promoted release, and the run's config."""
    registry = Registry(tmp_path / "registry")
    base = pretrained.model
    base_id = registry.publish_base(base, snapshot.segments.names, {
        "vocabulary_version": snapshot.log.vocabulary_version, "training_data_snapshot": snapshot.snapshot_id})
    layers = sorted(adapter_layers(stack_adapters(base, [], 1, tiny_lora)))
    versions = {a.segment: registry.publish_adapter(a, base_id, tiny_lora, layers)
                for a in make_adapters(base, (1, 6, 13))}
    registry.promote(base_id, versions)
    (tmp_path / "config.json").write_text(json.dumps({"segment_spec": str(SEGMENT_SPEC),
                                                      "user_attributes": MOVIELENS_USER_ATTRIBUTES}))
    return tmp_path


def test_export_command_writes_export(work_dir, store):
    result = CliRunner().invoke(app, ["export", "--work-dir", str(work_dir), "--store", str(store.store_dir)])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("export model_version=two_tower-")
    manifest = json.loads((work_dir / "export" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True
    assert manifest["release"] == Registry(work_dir / "registry").current().release_id
    assert sum(v is not None for v in manifest["adapter_versions"].values()) == 3
    exported = ExportedModel.load(work_dir / "export")
    assert exported.segment_spec is not None
    assert (exported.segment_slots >= 0).sum() >= 3


def test_export_command_without_release(tmp_path, store):
    result = CliRunner().invoke(app, ["export", "--work-dir", str(tmp_path), "--store", str(store.store_dir)])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: registry ")
    assert "has no promoted release" in result.stderr
    assert not (tmp_path / "export").exists()
