"""A versioned registry of base models and adapters on the local file system or any fsspec URL.

Layout under the root URL::

    bases/<base_id>/model.safetensors, model.json
    adapters/<base_id>/<segment slug>/<version>/adapter.safetensors, adapter.json
    releases/<release_id>.json      one base model and one adapter version per segment
    CURRENT.json                    the promoted release and the releases promoted before it

Every file is written once and never changed, except ``CURRENT.json``. Metadata is written
after the weights, and listings skip versions without it, so a reader never sees half an
artifact. Promotion writes a new release file, then replaces ``CURRENT.json`` in one write:
``os.replace`` on a local disk, a single object upload on object stores. Rolling back
rewrites ``CURRENT.json`` to point at an earlier release.

Promotion and rollback hold a file lock on a local registry. A promotion may name the release
it expects to replace (``expected_current``) and the schedule slot it serves (``slot``). Under
the lock it raises ``PromotionConflict`` when another promotion got there first, so of two
runs for the same slot, or two runs that compared against the same release, at most one
promotes. ``prune`` removes releases, base models and adapters that no kept release needs.

An adapter belongs to the base model it was trained on. Loading it onto another weights hash
or vocabulary raises ``BaseModelMismatch`` naming both, and a release must hold a record (an
adapter, or the reason it has none) for every segment its base model lists.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from recsys_peft import atomic
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.registry.artifacts import segment_slug
from recsys_peft.registry.lock import file_lock
from recsys_peft.registry.formats import (
    ADAPTER_METADATA, ADAPTER_WEIGHTS, MODEL_METADATA, MODEL_WEIGHTS, BaseModelMismatch, adapter_files,
    adapter_layer_names, base_model_files, base_model_from_files, check_binding, json_bytes, now,
    segment_adapter_from_files,
)
from recsys_peft.training.finetune import BaseModel, SegmentAdapter, stack_adapters

CURRENT = "CURRENT.json"
# Slots remembered in CURRENT.json, newest last, to reject a second promotion for the same slot.
SLOTS_KEPT = 100
# ``promote(expected_current=ANY)`` promotes whatever release is current.
ANY = "<any>"


class RegistryError(ValueError):
    """A registry request that cannot be served: a missing version, an incomplete release, no history."""


class PromotionConflict(RegistryError):
    """Another promotion changed the current release first, or already served this schedule slot."""


@dataclass(frozen=True)
class Release:
    """A promoted base model and, per segment, the adapter version that serves it (None: none)."""

    release_id: str
    base_id: str
    adapters: dict[str, str]
    created_at: str
    note: str = ""
    slot: str = ""

    def to_dict(self) -> dict:
        return {"release_id": self.release_id, "base_id": self.base_id, "adapters": self.adapters,
                "created_at": self.created_at, "note": self.note, "slot": self.slot}


@dataclass
class LoadedRelease:
    """A release read back: the base model, every segment's adapter, and the stacked model."""

    release: Release
    base: BaseModel
    base_meta: dict
    adapters: list[SegmentAdapter]
    adapted: BaseModel
    lora: LoRAConfig


def base_id_of(family: str, weights_hash: str) -> str:
    return f"{family}-{weights_hash[:12]}"


class Registry:
    """Base models, adapters and releases under one root URL (a local path or any fsspec URL)."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    # Paths and raw reads and writes.

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _write(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def _read_json(self, path: str) -> dict:
        return json.loads(self.fs.cat_file(path))

    def _children(self, *parts: str) -> list[str]:
        path = self._path(*parts)
        if not self.fs.isdir(path):
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(path, detail=False))

    def _replace_current(self, payload: dict) -> None:
        path = self._path(CURRENT)
        if isinstance(self.fs, LocalFileSystem):
            atomic.write_json(Path(path), payload)
            return
        # NOTE: this is atomic on object stores and the memory file system, because one upload
        # replaces an object whole. A backend that streams into the target file is not atomic.
        self._write(path, json_bytes(payload))

    def _promotion_lock(self) -> contextlib.AbstractContextManager:
        if isinstance(self.fs, LocalFileSystem):
            return file_lock(self.root)
        # NOTE: remote file systems get no lock, so two processes can still both pass the
        # expected_current check there. Run promotions under one Prefect concurrency limit instead.
        return contextlib.nullcontext()

    # Base models.

    def publish_base(self, model: torch.nn.Module, segments: Sequence[str], metadata: dict) -> str:
        """Store a base model with the segment names its adapters cover, and return its id.

        ``metadata`` should carry ``vocabulary_version`` and ``training_data_snapshot``. Publishing
        the same weights again returns the existing id and writes nothing.
        """
        weights_hash, files = base_model_files(model, {**metadata, "segments": list(segments)})
        base_id = base_id_of(model.family, weights_hash)
        if self.fs.exists(self._path("bases", base_id, MODEL_METADATA)):
            return base_id
        self._write(self._path("bases", base_id, MODEL_WEIGHTS), files[MODEL_WEIGHTS])
        self._write(self._path("bases", base_id, MODEL_METADATA), files[MODEL_METADATA])
        return base_id

    def base_meta(self, base_id: str) -> dict:
        path = self._path("bases", base_id, MODEL_METADATA)
        if not self.fs.exists(path):
            raise RegistryError(f"base model {base_id!r} not found in registry {self.url}; "
                                f"found {self.list_bases()}")
        return self._read_json(path)

    def load_base(self, base_id: str) -> tuple[BaseModel, dict]:
        meta = self.base_meta(base_id)
        path = self._path("bases", base_id, MODEL_WEIGHTS)
        return base_model_from_files(self.fs.cat_file(path), meta, path), meta

    def list_bases(self) -> list[str]:
        return [b for b in self._children("bases") if self.fs.exists(self._path("bases", b, MODEL_METADATA))]

    # Adapters.

    def publish_adapter(self, adapter: SegmentAdapter, base_id: str, lora: LoRAConfig, layers: Sequence[str] = (),
                        metrics: Mapping[str, float] | None = None, version: str | None = None,
                        extra: Mapping[str, object] | None = None) -> str:
        """Store one segment's adapter, or the record of why it has none, and return its version.

        The vocabulary and data snapshot come from the base model's metadata. ``layers`` names
        the adapted layers when the adapter has no weights to read them from. A caller that
        passes its own ``version`` (a deterministic key) can publish again after a retry: when
        that version exists already, nothing is written. ``extra`` is stored in the metadata.
        """
        base = self.base_meta(base_id)
        if adapter.segment not in base["segments"]:
            raise RegistryError(f"segment {adapter.segment!r} is not a segment of base model {base_id}; "
                                f"its segments are {base['segments']}")
        names = adapter_layer_names(adapter.state) if adapter.state is not None else sorted(layers)
        fields = {**dict(extra or {}), "base_model_id": base_id, "metrics_extra": dict(metrics or {})}
        files = adapter_files(adapter, lora, base["weights_hash"], base.get("vocabulary_version", ""),
                              base.get("training_data_snapshot", ""), names, fields)
        if version is None:
            version = f"{now().replace(':', '').replace('-', '').split('.')[0]}-{uuid.uuid4().hex[:8]}"
        elif not version or "/" in version or version.startswith("."):
            raise RegistryError(f"adapter version must be a plain folder name, got {version!r}")
        folder = ("adapters", base_id, segment_slug(adapter.segment_index, adapter.segment), version)
        if self.fs.exists(self._path(*folder, ADAPTER_METADATA)):
            return version
        if ADAPTER_WEIGHTS in files:
            self._write(self._path(*folder, ADAPTER_WEIGHTS), files[ADAPTER_WEIGHTS])
        self._write(self._path(*folder, ADAPTER_METADATA), files[ADAPTER_METADATA])
        return version

    def _adapter_folder(self, base_id: str, segment: str) -> tuple[str, ...]:
        segments = self.base_meta(base_id)["segments"]
        if segment not in segments:
            raise RegistryError(f"segment {segment!r} is not a segment of base model {base_id}; "
                                f"its segments are {segments}")
        return ("adapters", base_id, segment_slug(segments.index(segment), segment))

    def list_adapters(self, base_id: str, segment: str) -> list[str]:
        """Return the adapter versions of one segment under a base model, oldest first."""
        folder = self._adapter_folder(base_id, segment)
        return [v for v in self._children(*folder) if self.fs.exists(self._path(*folder, v, ADAPTER_METADATA))]

    def adapter_meta(self, base_id: str, segment: str, version: str) -> dict:
        path = self._path(*self._adapter_folder(base_id, segment), version, ADAPTER_METADATA)
        if not self.fs.exists(path):
            raise RegistryError(f"adapter version {version!r} of segment {segment!r} not found under base "
                                f"model {base_id}; found {self.list_adapters(base_id, segment)}")
        return self._read_json(path)

    def load_adapter(self, base_id: str, segment: str, version: str, base_hash: str,
                     vocabulary_version: str) -> SegmentAdapter:
        """Read one adapter and check that it was trained on ``base_hash`` and ``vocabulary_version``."""
        meta = self.adapter_meta(base_id, segment, version)
        folder = self._adapter_folder(base_id, segment)
        check_binding(meta, base_hash, vocabulary_version, f"{segment}@{version}")
        path = self._path(*folder, version, ADAPTER_WEIGHTS)
        weights = self.fs.cat_file(path) if self.fs.exists(path) else None
        return segment_adapter_from_files(weights, meta)

    def sizes(self, base_id: str, adapters: Mapping[str, str]) -> dict:
        """Return the bytes of the base model's weights and of each adapter's weights."""
        per_adapter = {segment: int(self.adapter_meta(base_id, segment, version)["weights_bytes"])
                       for segment, version in adapters.items()}
        return {"base_bytes": int(self.base_meta(base_id)["weights_bytes"]), "adapter_bytes": per_adapter}

    # Releases.

    def _current_pointer(self) -> dict:
        path = self._path(CURRENT)
        return self._read_json(path) if self.fs.exists(path) else {"release_id": None, "history": []}

    def current(self) -> Release | None:
        release_id = self._current_pointer()["release_id"]
        return None if release_id is None else self.release(release_id)

    def release(self, release_id: str) -> Release:
        path = self._path("releases", f"{release_id}.json")
        if not self.fs.exists(path):
            raise RegistryError(f"release {release_id!r} not found in registry {self.url}")
        return Release(**self._read_json(path))

    def list_releases(self) -> list[str]:
        return [name.removesuffix(".json") for name in self._children("releases") if name.endswith(".json")]

    def history(self) -> list[str]:
        """Return the promoted releases, the current one first."""
        pointer = self._current_pointer()
        return ([pointer["release_id"]] if pointer["release_id"] else []) + list(pointer["history"])

    def _validate_release(self, base_id: str, adapters: Mapping[str, str]) -> None:
        base = self.base_meta(base_id)
        missing = sorted(set(base["segments"]) - set(adapters))
        extra = sorted(set(adapters) - set(base["segments"]))
        if missing or extra:
            raise RegistryError(
                f"a release of base model {base_id} needs one adapter record per segment of the base: "
                f"missing {missing}, unexpected {extra}")
        for segment, version in adapters.items():
            meta = self.adapter_meta(base_id, segment, version)
            check_binding(meta, base["weights_hash"], base.get("vocabulary_version", ""), f"{segment}@{version}")

    def promote(self, base_id: str, adapters: Mapping[str, str], note: str = "",
                expected_current: str | None = ANY, slot: str = "") -> Release:
        """Promote a base model together with one adapter version per segment, atomically.

        ``expected_current`` is the release the caller compared against (None: none was
        current). ``slot`` names the schedule slot of the run, e.g. ``retrain/2026-12-06T03:00``.
        Raises ``PromotionConflict`` when the current release is not the expected one, or
        when a release was already promoted for ``slot``.
        """
        self._validate_release(base_id, adapters)
        with self._promotion_lock():
            pointer = self._current_pointer()
            if expected_current != ANY and pointer["release_id"] != expected_current:
                raise PromotionConflict(
                    f"release {pointer['release_id']} was promoted since this run compared against "
                    f"{expected_current}; evaluate against the new current release before promoting")
            slots = dict(pointer.get("slots", {}))
            if slot and slot in slots:
                raise PromotionConflict(f"slot {slot!r} was already promoted by release {slots[slot]}")
            release = Release(f"{now().replace(':', '').replace('-', '').split('.')[0]}-{uuid.uuid4().hex[:8]}",
                              base_id, dict(sorted(adapters.items())), now(), note, slot)
            self._write(self._path("releases", f"{release.release_id}.json"), json_bytes(release.to_dict()))
            history = ([pointer["release_id"]] if pointer["release_id"] else []) + list(pointer["history"])
            if slot:
                slots[slot] = release.release_id
            slots = dict(list(slots.items())[-SLOTS_KEPT:])
            self._replace_current({"release_id": release.release_id, "history": history, "slots": slots,
                                   "updated_at": now()})
        return release

    def promote_latest(self, base_id: str, note: str = "") -> Release:
        """Promote a base model with the newest adapter version of every one of its segments."""
        adapters = {}
        for segment in self.base_meta(base_id)["segments"]:
            versions = self.list_adapters(base_id, segment)
            if not versions:
                raise RegistryError(f"segment {segment!r} has no adapter record under base model {base_id}; "
                                    "fine-tune it (a fallback record counts) before promoting the base")
            adapters[segment] = versions[-1]
        return self.promote(base_id, adapters, note)

    def promote_adapter(self, segment: str, version: str, note: str = "") -> Release:
        """Promote one adapter version onto the current release's base model."""
        current = self.current()
        if current is None:
            raise RegistryError(f"registry {self.url} has no promoted release; promote a base model first")
        return self.promote(current.base_id, {**current.adapters, segment: version}, note,
                            expected_current=current.release_id)

    def rollback(self, steps: int = 1) -> Release:
        """Make the release promoted ``steps`` promotions before the current one current again."""
        if steps < 1:
            raise RegistryError(f"rollback steps must be at least 1, got {steps}")
        with self._promotion_lock():
            pointer = self._current_pointer()
            if len(pointer["history"]) < steps:
                raise RegistryError(f"cannot roll back {steps} release(s): registry {self.url} has "
                                    f"{len(pointer['history'])} earlier release(s)")
            target = pointer["history"][steps - 1]
            self._replace_current({"release_id": target, "history": pointer["history"][steps:],
                                   "slots": pointer.get("slots", {}), "updated_at": now()})
        return self.release(target)

    def prune(self, keep_releases: int) -> dict[str, list[str]]:
        """Remove what the newest ``keep_releases`` promoted releases do not need; return what went.

        The current release and the ``keep_releases - 1`` promoted before it stay, and rollback
        can reach only those afterwards. Releases promoted earlier go. Releases, base models
        and adapter versions that no kept release uses go only when they are older than the
        oldest kept release, so a candidate that a running job just published stays.
        """
        if keep_releases < 1:
            raise RegistryError(f"keep_releases must be at least 1, got {keep_releases}")
        removed: dict[str, list[str]] = {"releases": [], "bases": [], "adapters": []}
        with self._promotion_lock():
            pointer = self._current_pointer()
            promoted = ([pointer["release_id"]] if pointer["release_id"] else []) + list(pointer["history"])
            retained = promoted[:keep_releases]
            if not retained:
                return removed
            cutoff = min(self.release(r).created_at for r in retained)
            releases = {r: self.release(r) for r in self.list_releases()}
            stale = [r for r, release in releases.items()
                     if r not in retained and (r in promoted or release.created_at < cutoff)]
            self._replace_current({**pointer, "history": retained[1:], "updated_at": now()})
            for release_id in stale:
                self.fs.rm(self._path("releases", f"{release_id}.json"))
                removed["releases"].append(release_id)

            used = [release for r, release in releases.items() if r not in stale]
            used_bases = {release.base_id for release in used}
            used_adapters = {(release.base_id, segment, version) for release in used
                             for segment, version in release.adapters.items()}
            for base_id in self.list_bases():
                meta = self.base_meta(base_id)
                if base_id not in used_bases and meta["created_at"] < cutoff:
                    for folder in (("bases", base_id), ("adapters", base_id)):
                        if self.fs.exists(self._path(*folder)):
                            self.fs.rm(self._path(*folder), recursive=True)
                    removed["bases"].append(base_id)
                    continue
                for segment in meta["segments"]:
                    for version in self.list_adapters(base_id, segment):
                        created = self.adapter_meta(base_id, segment, version)["created_at"]
                        if (base_id, segment, version) not in used_adapters and created < cutoff:
                            self.fs.rm(self._path(*self._adapter_folder(base_id, segment), version), recursive=True)
                            removed["adapters"].append(f"{base_id}/{segment}/{version}")
        return removed

    def load_release(self, release_id: str | None = None) -> LoadedRelease:
        """Load a release (the current one by default): base model, adapters and stacked model."""
        release = self.release(release_id) if release_id else self.current()
        if release is None:
            raise RegistryError(f"registry {self.url} has no promoted release")
        return self._load(release)

    def load_candidate(self, base_id: str, adapters: Mapping[str, str]) -> LoadedRelease:
        """Load a base model with one adapter version per segment that no release names yet."""
        self._validate_release(base_id, adapters)
        return self._load(Release("<candidate>", base_id, dict(sorted(adapters.items())), now()))

    def _load(self, release: Release) -> LoadedRelease:
        base, meta = self.load_base(release.base_id)
        adapters = [self.load_adapter(release.base_id, segment, version, meta["weights_hash"],
                                      meta.get("vocabulary_version", ""))
                    for segment, version in release.adapters.items()]
        lora = _stacking_config([self.adapter_meta(release.base_id, s, v) for s, v in release.adapters.items()])
        adapted = stack_adapters(base, adapters, len(meta["segments"]), lora)
        return LoadedRelease(release, base, meta, adapters, adapted, lora)


def _stacking_config(metas: list[dict]) -> LoRAConfig:
    """Return a LoRA config wide enough for every adapter of a release, whose targets must agree."""
    targets = {tuple(m["layers"]) for m in metas if m["kept"]}
    if len(targets) > 1:
        raise RegistryError(f"the adapters of a release must adapt the same layers, got {sorted(targets)}")
    if not metas:
        return LoRAConfig()
    first = metas[0]["lora"]
    rank = max(int(m["rank"]) for m in metas)
    # Each adapter keeps its own alpha / r when stacked, so the stacked alpha only sets the width.
    return LoRAConfig(r=rank, alpha=float(first["alpha"]), dropout=float(first["dropout"]),
                      target_modules=tuple(first["target_modules"]) if first.get("target_modules") else None,
                      segment_bias=any(m["lora"].get("segment_bias", False) for m in metas))


__all__ = ["ANY", "BaseModelMismatch", "LoadedRelease", "PromotionConflict", "Registry", "RegistryError", "Release",
           "base_id_of"]
