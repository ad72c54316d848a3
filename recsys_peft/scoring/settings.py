"""Settings of a batch scoring job: which model, which users, where the output goes, chunk sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

from recsys_peft.scoring.recommend import DEFAULT_USER_CHUNK
from recsys_peft.scoring.topk import DEFAULT_ITEM_CHUNK

SELECTION_KINDS = ("all", "segment", "list")


class ScoringInputError(ValueError):
    """The users to score cannot be selected: an unknown segment, or an unreadable user list."""


@dataclass(frozen=True)
class UserSelection:
    """The set of users a job scores.

    ``all``: every user in the store that is not deleted. ``segment``: those of them in the
    segment named by ``value``. ``list``: the ids in the ``user_id`` column of the parquet file
    at ``value``, including ids that neither the store nor the model has seen.
    """

    kind: str = "all"
    value: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SELECTION_KINDS:
            raise ValueError(f"user selection kind must be one of {list(SELECTION_KINDS)}, got {self.kind!r}")
        if self.kind == "all" and self.value:
            raise ValueError(f"user selection 'all' takes no value, got {self.value!r}")
        if self.kind != "all" and not self.value:
            raise ValueError(f"user selection {self.kind!r} needs a value: "
                             f"{'a segment name' if self.kind == 'segment' else 'a parquet file of user ids'}")

    @classmethod
    def from_options(cls, segment: str | None = None, user_list: str | None = None) -> "UserSelection":
        """Build the selection from command-line options; with neither option, all users."""
        if segment and user_list:
            raise ValueError("give at most one of --segment and --users, got both")
        if segment:
            return cls("segment", segment)
        if user_list:
            return cls("list", user_list)
        return cls()

    def describe(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value}"


def today_utc() -> str:
    return datetime.now(timezone.utc).date().isoformat()


@dataclass(frozen=True)
class ScoringSettings:
    """A scoring job. Without ``store_dir`` the job reads inputs prepared in its staging folder."""

    export_dir: str
    output_dir: str
    store_dir: str | None = None
    users: UserSelection = field(default_factory=UserSelection)
    k: int = 10
    run_date: str = field(default_factory=today_utc)
    catalogue: str | None = None         # parquet with item_id and available columns
    # Users per partition: the unit of work and of output files. Several partitions per worker keep
    # every worker busy to the end: with 5 partitions on 2 workers, one idles while the other scores the fifth.
    partition_users: int = 10_000
    user_chunk: int = DEFAULT_USER_CHUNK
    item_chunk: int = DEFAULT_ITEM_CHUNK
    resume: bool = True                  # reuse the parts of an interrupted run with the same plan
    torch_threads: int | None = None     # per worker process; None leaves torch's setting

    def __post_init__(self) -> None:
        for name in ("k", "partition_users", "user_chunk", "item_chunk", "torch_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"ScoringSettings.{name} must be at least 1, got {getattr(self, name)}")
        try:
            valid_date = len(self.run_date) == 10 and date.fromisoformat(self.run_date) is not None
        except ValueError:
            valid_date = False
        if not valid_date:
            raise ValueError(f"ScoringSettings.run_date must be a date as YYYY-MM-DD, got {self.run_date!r}")

    def to_dict(self) -> dict:
        return asdict(self)
