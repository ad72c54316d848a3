"""Fixtures of the batch scoring tests.

``newer_store`` is the session data ingested again with one more file of events, as a store
looks some time after the export. It adds two users (u900 with a history, u901 whose only event
is on a new item), two items (i900, i901), and events of u0 and u1 on the new items.
``spec_export`` is the session's adapted two-tower model exported with its segment spec, and
``sasrec_export`` a small untrained SASRec model with adapters in three segments.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch

from recsys_peft.adapters.lora import adapter_state
from recsys_peft.export.exporter import export_model
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.scoring.settings import ScoringSettings
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.finetune import SegmentAdapter, adapter_slots, stack_adapters
from recsys_peft.training.pretrain import sasrec_config

ROOT = Path(__file__).resolve().parents[2]
SEGMENT_SPEC = ROOT / "features" / "segments" / "gender_x_age.yaml"
SASREC_KEPT_SEGMENTS = (0, 5, 9)


@pytest.fixture
def job_settings(tmp_path, export_dir, store) -> Callable[..., ScoringSettings]:
    """Build settings that score the session store with the session export into ``tmp_path/out``."""
    def build(**overrides) -> ScoringSettings:
        values = dict(export_dir=str(export_dir), output_dir=str(tmp_path / "out"), store_dir=str(store.store_dir),
                      k=5, run_date="2026-11-01", partition_users=25, user_chunk=16, item_chunk=64)
        values.update(overrides)
        return ScoringSettings(**values)

    return build


@pytest.fixture(scope="session")
def newer_store(synthetic_log, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("newer_raw")
    for name in ("users.csv", "items.csv"):
        shutil.copy(synthetic_log.folder / name, raw / name)
    (raw / "events").mkdir()
    shutil.copy(synthetic_log.folder / "interactions.csv", raw / "events" / "a.csv")
    spec_text = synthetic_log.spec_path.read_text(encoding="utf-8").replace("file: interactions.csv", "file: events")
    (raw / "spec.yaml").write_text(spec_text, encoding="utf-8")
    spec = load_source_spec(raw / "spec.yaml")
    store_dir = tmp_path_factory.mktemp("newer_work") / "store"
    ingest_source(spec, raw, store_dir)

    late = 1_700_000_000
    rows = [("u900", "i3", late), ("u900", "i900", late + 1), ("u900", "i7", late + 2),
            ("u0", "i900", late + 3), ("u1", "i901", late + 4), ("u901", "i901", late + 5)]
    pacsv.write_csv(pa.table({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                              "ts": [r[2] for r in rows], "rating": [3] * len(rows)}), raw / "events" / "b.csv")
    users = pacsv.read_csv(raw / "users.csv")
    new_users = pa.table({"user": ["u900", "u901"], "age": [30, 30], "gender": ["F", "M"],
                          "occupation": ["other", "other"]}).cast(users.schema)
    pacsv.write_csv(pa.concat_tables([users, new_users]), raw / "users.csv")
    items = pacsv.read_csv(raw / "items.csv")
    new_items = pa.table({"item": ["i900", "i901"], "genres": ["Drama", "Comedy"]}).cast(items.schema)
    pacsv.write_csv(pa.concat_tables([items, new_items]), raw / "items.csv")
    ingest_source(spec, raw, store_dir)
    return store_dir


@pytest.fixture(scope="session")
def spec_export(snapshot, store, adapted, tmp_path_factory) -> Path:
    model, slots = adapted
    out_dir = tmp_path_factory.mktemp("spec_export") / "export"
    export_model(model, snapshot, slots, out_dir, store.store_dir, {}, seed=0,
                 segment_spec=load_segment_spec(SEGMENT_SPEC))
    return out_dir


@pytest.fixture(scope="session")
def sasrec_adapted(snapshot, tiny_lora) -> tuple[SASRecModel, tuple]:
    """An untrained SASRec model with random adapters in ``SASREC_KEPT_SEGMENTS``, and user slots."""
    torch.manual_seed(0)
    base = SASRecModel(sasrec_config(snapshot, embedding_dim=16, num_layers=1, num_heads=2, ffn_dim=32,
                                     max_length=8, dropout=0.0, attention_dropout=0.0))
    probe = stack_adapters(base, [], 1, tiny_lora)
    generator = torch.Generator().manual_seed(1)
    adapters = []
    for index, name in enumerate(snapshot.segments.names):
        state = None
        if index in SASREC_KEPT_SEGMENTS:
            state = {key: torch.randn(value.shape, generator=generator) * 0.3
                     for key, value in sorted(adapter_state(probe, 0).items())}
        adapters.append(SegmentAdapter(name, index, 0, 0, 0.0, 0.0, state, "test"))
    model = stack_adapters(base, adapters, len(snapshot.segments.names), tiny_lora)
    return model, adapter_slots(snapshot, adapters)


@pytest.fixture(scope="session")
def sasrec_export(snapshot, store, sasrec_adapted, tmp_path_factory) -> Path:
    model, slots = sasrec_adapted
    out_dir = tmp_path_factory.mktemp("sasrec_export") / "export"
    export_model(model, snapshot, slots, out_dir, store.store_dir, {"base_model_hash": "1" * 64}, seed=0,
                 segment_spec=load_segment_spec(SEGMENT_SPEC))
    return out_dir
