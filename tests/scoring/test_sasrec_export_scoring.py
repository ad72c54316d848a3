"""The sequential model exports, loads alone and scores users the export has never seen."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.export.exporter import PARITY_TOLERANCE
from recsys_peft.scoring.job import run_job

ROOT = Path(__file__).resolve().parents[2]

# Run a scoring job in a fresh interpreter and list the package modules it imported.
FRESH_JOB_SCRIPT = textwrap.dedent("""
    import json, sys
    from recsys_peft.scoring.job import run_job
    from recsys_peft.scoring.settings import ScoringSettings

    summary = run_job(ScoringSettings(**json.loads(sys.argv[1])))
    print(json.dumps({"path": summary.path,
                      "modules": sorted(m for m in sys.modules if m.startswith("recsys_peft"))}))
""")


def test_sasrec_manifest_records_parity(sasrec_export, snapshot):
    manifest = json.loads((sasrec_export / "manifest.json").read_text())

    assert manifest["family"] == "sasrec"
    assert manifest["model_version"].startswith("sasrec-")
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    assert manifest["parity"]["segments"] == sorted(snapshot.segments.names)
    versions = manifest["adapter_versions"]
    assert sorted(name for name, version in versions.items() if version) == sorted(
        snapshot.segments.names[s] for s in (0, 5, 9))
    assert all(v.startswith("sha256:") for v in versions.values() if v)


@pytest.mark.slow
def test_sasrec_fresh_process_job(job_settings, sasrec_export, tmp_path):
    settings = job_settings(export_dir=str(sasrec_export), torch_threads=1)
    in_process = run_job(settings)
    arguments = {k: v for k, v in settings.to_dict().items() if k != "users"}
    arguments["output_dir"] = str(tmp_path / "fresh")

    run = subprocess.run([sys.executable, "-c", FRESH_JOB_SCRIPT, json.dumps(arguments)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    fresh = pq.read_table(result["path"]).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    expected = pq.read_table(in_process.path).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    assert fresh.equals(expected)
    assert "recsys_peft.models.sasrec" in result["modules"]
    assert not [m for m in result["modules"]
                if m.startswith(("recsys_peft.training", "recsys_peft.registry", "recsys_peft.export.exporter"))]


def test_sasrec_scores_unknown_user_history(job_settings, newer_store, sasrec_export):
    summary = run_job(job_settings(store_dir=str(newer_store), export_dir=str(sasrec_export)))

    table = pq.read_table(summary.path)
    u900 = table.filter(pc.equal(table.column("user_id"), "u900"))
    # SASRec reads only the history (i3, i7), so u900 is scored by the model, not the fallback.
    assert summary.counts.unknown_users == 2
    assert summary.counts.fallback_users == 1
    assert summary.counts.model_users == 121
    assert u900.num_rows == 5
    assert not set(u900.column("item_id").to_pylist()) & {"i3", "i7", "i900", "i901"}
    assert set(u900.column("segment").to_pylist()) == {"F:25-34"}


def test_sasrec_job_matches_dense_scores(job_settings, sasrec_export, sasrec_adapted, snapshot):
    model, slots = sasrec_adapted
    summary = run_job(job_settings(export_dir=str(sasrec_export), k=3))

    table = pq.read_table(summary.path).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    log = snapshot.log
    users = np.arange(log.num_users)
    batch = user_batch(log, snapshot.features, users, log.offsets[users + 1], model.config.history_length, slots)
    with torch.no_grad():
        dense = model.user_embeddings(batch) @ model.all_item_embeddings().T
    for user in users:
        dense[user, log.items[log.offsets[user]:log.offsets[user + 1]]] = float("-inf")
    top = torch.topk(dense, 3, dim=1).values
    row_of = {u: i for i, u in enumerate(snapshot.user_ids)}
    rows = np.array([row_of[u] for u in table.column("user_id").to_pylist()])
    ranks = table.column("rank").to_numpy() - 1
    np.testing.assert_allclose(table.column("score").to_numpy(), top.numpy()[rows, ranks], atol=1e-5)
    assert table.column("model_version").unique().to_pylist() == [json.loads(
        (sasrec_export / "manifest.json").read_text())["model_version"]]
    assert pa.types.is_string(table.schema.field("segment").type)
