"""Loading rejects an export whose files were truncated or altered after it was written."""

import shutil

import pytest

from recsys_peft import atomic
from recsys_peft.export.digests import ExportCorrupted
from recsys_peft.export.model import ExportedModel


@pytest.fixture
def private_export(export_dir, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    return copy


def test_manifest_lists_every_file(export_dir):
    files = atomic.read_json(export_dir / "manifest.json")["files"]

    on_disk = sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob("*")
                     if p.is_file() and p.name != "manifest.json")
    assert sorted(files) == on_disk
    assert all(len(entry["sha256"]) == 64 and entry["bytes"] > 0 for entry in files.values())


def test_flipped_item_byte_rejected(private_export):
    path = private_export / "items.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ExportCorrupted, match=r"items\.safetensors: SHA-256 .* differs"):
        ExportedModel.load(private_export)


def test_truncated_user_tower_rejected(private_export):
    path = private_export / "user_tower.safetensors"
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(ExportCorrupted, match=r"user_tower\.safetensors: 100 bytes, but .* records"):
        ExportedModel.load(private_export)


def test_missing_vocabulary_file_rejected(private_export):
    (private_export / "vocab" / "users.parquet").unlink()

    with pytest.raises(ExportCorrupted, match=r"users\.parquet: listed in .* but missing"):
        ExportedModel.load(private_export)


def test_manifest_without_digests_rejected(private_export):
    manifest = atomic.read_json(private_export / "manifest.json")
    del manifest["files"]
    atomic.write_json(private_export / "manifest.json", manifest)

    with pytest.raises(ExportCorrupted, match="no file digests"):
        ExportedModel.load(private_export)
