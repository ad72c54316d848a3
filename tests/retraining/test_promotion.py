"""Promotion with an expected current release and a schedule slot, under the registry's lock."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys_peft.adapters.lora import adapter_layers
from recsys_peft.registry.store import PromotionConflict, Registry
from recsys_peft.training.finetune import stack_adapters

ROOT = Path(__file__).resolve().parents[2]
META = {"vocabulary_version": "u120-i150-test", "training_data_snapshot": "snapshot-1"}
SLOT = "retrain/2026-12-06T03:00:00+00:00"

# Promote once a shared start time has passed, with a slow pointer write, so that without the
# lock both processes would read the old pointer before either replaced it.
RACE = """
import json, sys, time
from recsys_peft.registry.store import PromotionConflict, Registry
url, base_id, versions, expected, slot, start = sys.argv[1:]
registry = Registry(url)
replace = registry._replace_current
def slow_replace(payload):
    time.sleep(0.5)
    replace(payload)
registry._replace_current = slow_replace
time.sleep(max(0.0, float(start) - time.time()))
try:
    release = registry.promote(base_id, json.loads(versions), expected_current=expected or None, slot=slot)
    print(json.dumps({"promoted": release.release_id}))
except PromotionConflict as error:
    print(json.dumps({"conflict": str(error)}))
"""


@pytest.fixture
def published(tmp_path, base_model, snapshot, make_adapters, tiny_lora):
    registry = Registry(tmp_path / "registry")
    layers = sorted(adapter_layers(stack_adapters(base_model, [], 1, tiny_lora)))
    base_id = registry.publish_base(base_model, snapshot.segments.names, META)
    versions = {a.segment: registry.publish_adapter(a, base_id, tiny_lora, layers)
                for a in make_adapters(base_model, (1, 6))}
    return registry, base_id, versions


def test_promote_checks_expected_current(published):
    registry, base_id, versions = published
    first = registry.promote(base_id, versions, expected_current=None)

    with pytest.raises(PromotionConflict, match=f"release {first.release_id} was promoted since"):
        registry.promote(base_id, versions, expected_current=None)

    second = registry.promote(base_id, versions, expected_current=first.release_id)
    assert registry.history() == [second.release_id, first.release_id]


def test_promote_rejects_repeated_slot(published):
    registry, base_id, versions = published
    first = registry.promote(base_id, versions, slot=SLOT)

    expected = re.escape(f"slot '{SLOT}' was already promoted by release {first.release_id}")
    with pytest.raises(PromotionConflict, match=expected):
        registry.promote(base_id, versions, slot=SLOT)

    assert registry.current().slot == SLOT


def test_rollback_remembers_slots(published):
    registry, base_id, versions = published
    registry.promote(base_id, versions, slot=SLOT)
    registry.promote(base_id, versions, slot="other")

    registry.rollback()

    with pytest.raises(PromotionConflict, match="already promoted"):
        registry.promote(base_id, versions, slot="other")


def test_adapter_version_key_publishes_once(published, base_model, make_adapters, tiny_lora):
    registry, base_id, _ = published
    adapter = make_adapters(base_model, (2,))[2]
    layers = sorted(adapter_layers(stack_adapters(base_model, [], 1, tiny_lora)))

    first = registry.publish_adapter(adapter, base_id, tiny_lora, layers, version="ckey1", extra={"data_hash": "h"})
    again = registry.publish_adapter(adapter, base_id, tiny_lora, layers, version="ckey1")

    assert first == again == "ckey1"
    assert registry.list_adapters(base_id, adapter.segment).count("ckey1") == 1
    assert registry.adapter_meta(base_id, adapter.segment, "ckey1")["data_hash"] == "h"


def test_prune_keeps_newest_releases(published, base_model, make_adapters, tiny_lora):
    registry, base_id, versions = published
    layers = sorted(adapter_layers(stack_adapters(base_model, [], 1, tiny_lora)))
    adapter = make_adapters(base_model, (1,))[1]
    unused = registry.publish_adapter(adapter, base_id, tiny_lora, layers)
    time.sleep(0.01)
    releases = [registry.promote(base_id, versions).release_id for _ in range(4)]
    time.sleep(0.01)
    newer_unused = registry.publish_adapter(adapter, base_id, tiny_lora, layers)
    newest = registry.promote(base_id, versions).release_id
    segment = adapter.segment

    removed = registry.prune(keep_releases=2)

    assert sorted(removed["releases"]) == sorted(releases[:3])
    assert registry.history() == [newest, releases[3]]
    assert sorted(registry.list_releases()) == sorted([newest, releases[3]])
    assert removed["adapters"] == [f"{base_id}/{segment}/{unused}"]
    assert newer_unused in registry.list_adapters(base_id, segment)
    assert registry.list_bases() == [base_id]
    assert registry.load_release().release.release_id == newest


@pytest.mark.slow
def test_concurrent_promotions_one_wins(published):
    registry, base_id, versions = published
    current = registry.promote(base_id, versions).release_id
    start = time.time() + 6.0  # both processes import torch first

    processes = [subprocess.Popen([sys.executable, "-c", RACE, registry.url, base_id, json.dumps(versions),
                                   current, SLOT, str(start)], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]

    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    winners = [r["promoted"] for r in results if "promoted" in r]
    assert len(winners) == 1, results
    assert registry.history() == [winners[0], current]
