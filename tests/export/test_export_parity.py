import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import recsys_peft.export.exporter as exporter_module
from recsys_peft import atomic
from recsys_peft.export.digests import folder_digests
from recsys_peft.export.exporter import PARITY_TOLERANCE, PARITY_USERS_PER_SEGMENT, ParityError, export_two_tower
from recsys_peft.export.model import EXPORT_SCHEMA_VERSION, ExportedModel

ALLOWED_SUFFIXES = {".json", ".safetensors", ".parquet"}
ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: load the export, score the saved batch, and list the package
# modules that loading pulled in.
FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    from safetensors.torch import load_file, save_file
    from recsys_peft.export.model import ExportedModel, UserBatch

    export_dir, batch_path, out_path = sys.argv[1:4]
    inputs = load_file(batch_path)
    batch = UserBatch(inputs["users"], inputs["history"], inputs["attributes"], inputs["segments"])
    exported = ExportedModel.load(export_dir)
    scores = exported.user_vectors(batch) @ exported.item_vectors.T
    save_file({"scores": scores.contiguous()}, out_path)
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("recsys_peft"))))
""")


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def earlier_export(tmp_path, snapshot, store, adapted) -> Path:
    """A good export in a private folder, for tests that try to overwrite it."""
    model, slots = adapted
    out_dir = tmp_path / "export"
    export_two_tower(model, snapshot, slots, out_dir, store.store_dir, {}, seed=0)
    return out_dir


def export_again(snapshot, store, adapted, out_dir: Path) -> dict:
    model, slots = adapted
    return export_two_tower(model, snapshot, slots, out_dir, store.store_dir, {}, seed=0)


def test_export_folder_layout(export_dir):
    files = sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob("*") if p.is_file())

    assert files == ["items.safetensors", "manifest.json", "model.json", "segments.parquet",
                     "user_tower.safetensors", "vocab/items.parquet", "vocab/users.parquet",
                     "vocab/version.json"]


def test_export_has_no_pickles(export_dir):
    for path in export_dir.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix in ALLOWED_SUFFIXES, path
        # Each file must parse as the format its suffix names, so none is a renamed pickle.
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            assert load_file(path)
        else:
            data = path.read_bytes()
            assert data[:4] == b"PAR1", path
            assert data[-4:] == b"PAR1", path


def test_manifest_records_parity(export_dir, snapshot):
    manifest = atomic.read_json(export_dir / "manifest.json")
    sizes = snapshot.segments.sizes()

    parity = manifest["parity"]
    assert parity["passed"] is True
    assert parity["tolerance"] == PARITY_TOLERANCE
    assert 0.0 <= parity["max_abs_diff"] <= PARITY_TOLERANCE
    assert parity["segments"] == sorted(snapshot.segments.names)
    assert parity["users"] == sum(min(n, PARITY_USERS_PER_SEGMENT) for n in sizes.values())
    assert manifest["schema_version"] == EXPORT_SCHEMA_VERSION
    assert manifest["base_model_hash"] == "0" * 64
    assert manifest["vocabulary_version"] == snapshot.log.vocabulary_version
    assert manifest["training_data_snapshot"] == snapshot.snapshot_id
    assert manifest["model_version"].startswith("two_tower-")


def test_loaded_export_matches_model(export_dir, snapshot, adapted):
    model, slots = adapted

    exported = ExportedModel.load(export_dir)

    assert torch.equal(exported.item_vectors, model.all_item_embeddings(snapshot.features.item_tags))
    assert np.array_equal(exported.user_slots, slots)
    assert exported.segment_of_user == [snapshot.segments.names[s] for s in snapshot.segments.user_segments]
    assert exported.model.num_segments == len(snapshot.segments.names)
    assert exported.model_version == exported.manifest["model_version"]


@pytest.mark.slow
def test_fresh_process_same_scores(export_dir, snapshot, adapted, final_batch, tmp_path):
    model, slots = adapted
    batch = final_batch(slots)
    inputs = {"users": batch.users, "history": batch.history.contiguous(),
              "attributes": batch.attributes.contiguous(), "segments": batch.segments}
    save_file(inputs, str(tmp_path / "batch.safetensors"))
    with torch.no_grad():
        expected = model.user_embeddings(batch) @ model.all_item_embeddings(snapshot.features.item_tags).T

    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(export_dir), str(tmp_path / "batch.safetensors"),
         str(tmp_path / "scores.safetensors")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )

    assert run.returncode == 0, run.stderr
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    assert "recsys_peft.export.model" in modules
    assert not [m for m in modules if m.startswith(("recsys_peft.training", "recsys_peft.registry",
                                                    "recsys_peft.export.exporter", "recsys_peft.ingest"))]
    actual = load_file(tmp_path / "scores.safetensors")["scores"]
    assert actual.shape == (snapshot.log.num_users, snapshot.log.num_items)
    assert float((actual - expected).abs().max()) <= PARITY_TOLERANCE
    # The batch mixes users with adapters and users on the base model.
    assert (slots >= 0).any()
    assert (slots == -1).any()


def test_tampered_weights_keep_old_export(earlier_export, snapshot, store, adapted, monkeypatch):
    before = folder_digest(earlier_export)
    real_save_file = exporter_module.save_file

    def save_perturbed(tensors, filename, *args, **kwargs):
        if Path(filename).name == "user_tower.safetensors":
            tensors = dict(tensors)
            tensors["user_out.base.weight"] = tensors["user_out.base.weight"] + 0.05
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(exporter_module, "save_file", save_perturbed)

    with pytest.raises(ParityError, match=r"exported scores differ from the training model's by .*"
                                          r"the export at .* was not replaced"):
        export_again(snapshot, store, adapted, earlier_export)

    assert folder_digest(earlier_export) == before
    assert sorted(p.name for p in earlier_export.parent.iterdir()) == ["export"]


def test_missing_tensor_keeps_old_export(earlier_export, snapshot, store, adapted, monkeypatch):
    before = folder_digest(earlier_export)
    real_save_file = exporter_module.save_file

    def save_without_bias(tensors, filename, *args, **kwargs):
        if Path(filename).name == "user_tower.safetensors":
            tensors = {k: v for k, v in tensors.items() if k != "user_out.base.bias"}
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(exporter_module, "save_file", save_without_bias)

    with pytest.raises(ValueError, match=r"does not match model\.json: missing \['user_out\.base\.bias'\]"):
        export_again(snapshot, store, adapted, earlier_export)

    assert folder_digest(earlier_export) == before
    assert sorted(p.name for p in earlier_export.parent.iterdir()) == ["export"]


def test_failed_first_export_writes_nothing(tmp_path, snapshot, store, adapted, monkeypatch):
    real_save_file = exporter_module.save_file

    def save_perturbed(tensors, filename, *args, **kwargs):
        if Path(filename).name == "items.safetensors":
            tensors = {**tensors, "vectors": tensors["vectors"].flip(0).contiguous()}
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(exporter_module, "save_file", save_perturbed)

    with pytest.raises(ParityError):
        export_again(snapshot, store, adapted, tmp_path / "export")

    assert list(tmp_path.iterdir()) == []


def test_load_missing_file(export_dir, tmp_path):
    copy = shutil.copytree(export_dir, tmp_path / "export")
    (copy / "manifest.json").unlink()

    with pytest.raises(FileNotFoundError, match=r"not an export folder: .*manifest\.json is missing"):
        ExportedModel.load(copy)


def test_load_unknown_family(export_dir, tmp_path):
    copy = shutil.copytree(export_dir, tmp_path / "export")
    spec = atomic.read_json(copy / "model.json")
    atomic.write_json(copy / "model.json", {**spec, "family": "matrix_factorization"})
    manifest = atomic.read_json(copy / "manifest.json")
    atomic.write_json(copy / "manifest.json", {**manifest, "files": folder_digests(copy)})

    with pytest.raises(ValueError, match=r"model family 'matrix_factorization' is not one of \['sasrec', 'two_tower'\]"):
        ExportedModel.load(copy)
