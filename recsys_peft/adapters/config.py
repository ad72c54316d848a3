"""Settings of the per-segment low-rank adapters: rank, scaling, dropout, targets, ranks by size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapter settings shared by every adapted layer of a model.

    ``r`` is the rank, and the update ``B A`` is scaled by ``alpha / r``. ``dropout`` applies to
    the adapter's input only. ``target_modules`` names the adapter points that get adapters: an
    entry matches a layer whose qualified name equals it or ends with ``"." + entry``, and None
    selects the model family's default targets. ``segment_ranks`` lowers the rank of small
    segments: a list of ``(min_users, rank)`` pairs with increasing ``min_users``. A segment gets
    the rank of the last pair whose ``min_users`` it reaches, or the first pair's rank below them
    all. Without pairs every segment gets ``r``. Stacked models are built with rank ``r``, so no
    pair may exceed it. ``segment_bias`` gives every adapted dense layer a per-segment bias as
    well, starting at zero: a shift of the layer's output that does not depend on its input,
    such as a segment's taste added to every one of its users.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    segment_ranks: tuple[tuple[int, int], ...] = field(default=())
    segment_bias: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        # YAML and JSON give lists, so normalise to tuples to keep the config hashable.
        if self.target_modules is not None:
            targets = _as_names(self.target_modules)
            if not targets:
                raise ValueError("LoRA target_modules must name at least one layer, or be None for the "
                                 "model family's defaults; got an empty list")
            object.__setattr__(self, "target_modules", targets)
        object.__setattr__(self, "segment_ranks", self._validated_ranks(self.segment_ranks))

    def _validated_ranks(self, pairs: Iterable) -> tuple[tuple[int, int], ...]:
        normalised = []
        for position, pair in enumerate(pairs):
            if len(pair) != 2:
                raise ValueError(f"LoRA segment_ranks[{position}] must be a (min_users, rank) pair, got {pair!r}")
            min_users, rank = int(pair[0]), int(pair[1])
            if not 1 <= rank <= self.r:
                raise ValueError(
                    f"LoRA segment_ranks[{position}] has rank {rank}, expected 1 to r={self.r}; "
                    "r is the rank of stacked models, so raise r to the largest rank")
            if normalised and min_users <= normalised[-1][0]:
                raise ValueError(
                    f"LoRA segment_ranks must have increasing min_users, got {normalised[-1][0]} "
                    f"then {min_users} at position {position}")
            normalised.append((min_users, rank))
        return tuple(normalised)

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def rank_for(self, users: int) -> int:
        """Return the adapter rank of a segment with ``users`` users."""
        if not self.segment_ranks:
            return self.r
        rank = self.segment_ranks[0][1]
        for min_users, pair_rank in self.segment_ranks:
            if users >= min_users:
                rank = pair_rank
        return rank

    def with_rank(self, rank: int) -> "LoRAConfig":
        """Return this config with rank ``rank`` and the same alpha, so the scaling becomes alpha / rank."""
        return LoRAConfig(rank, self.alpha, self.dropout, self.target_modules, segment_bias=self.segment_bias)

    def to_dict(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": None if self.target_modules is None else list(self.target_modules),
                "segment_ranks": [list(pair) for pair in self.segment_ranks], "segment_bias": self.segment_bias}

    @classmethod
    def from_dict(cls, data: dict) -> "LoRAConfig":
        known = {"r", "alpha", "dropout", "target_modules", "segment_ranks", "segment_bias"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LoRA config has unknown keys {unknown}; allowed: {sorted(known)}")
        return cls(**data)


def _as_names(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(name) for name in value)
