"""Settings of scheduled retraining: cron schedules, the promotion gate and retention."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Deployment name -> cron schedule (minute hour day-of-month month day-of-week).
DEFAULT_SCHEDULES: dict[str, str] = {
    "ingest": "0 * * * *",         # hourly
    "segments": "30 1 * * *",      # nightly: adapters of segments whose data changed
    "retrain": "0 3 * * 0",        # weekly, Sunday: the base model and every adapter
    "score": "0 5 * * *",          # daily, from the promoted release
}


@dataclass(frozen=True)
class RetrainConfig:
    """Schedules, the promotion gate and retention of scheduled retraining.

    A candidate is promoted only when its mean NDCG@10 on the held-out window exceeds the
    promoted release's by at least ``promotion_margin`` (absolute). The held-out window is
    the test target of every user whose last event falls in the final ``holdout_days`` days
    of the store. When fewer than ``min_holdout_users`` users fall in it, every test target
    is used instead and the run records that.
    """

    schedules: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SCHEDULES))
    timezone: str = "UTC"
    promotion_margin: float = 0.0
    # The base model is retrained when the vocabulary has grown by more than this fraction of
    # the ids the promoted base has rows for (users and items together).
    vocabulary_growth_threshold: float = 0.05
    # A run flags drift when the promoted release's held-out NDCG@10 fell by more than this
    # (absolute) since the last run that scored it.
    degradation_alert: float = 0.02
    holdout_days: int = 7
    min_holdout_users: int = 20
    registry_url: str = ""           # empty: WORK_DIR/registry
    keep_releases: int = 5           # the current release and the ones promoted before it
    keep_recommendation_days: int = 14
    keep_quarantine_days: int = 30
    keep_run_records: int = 200

    def __post_init__(self) -> None:
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        unknown = sorted(set(self.schedules) - set(DEFAULT_SCHEDULES))
        if unknown:
            raise ValueError(f"RetrainConfig.schedules has unknown deployments {unknown}; "
                             f"expected some of {sorted(DEFAULT_SCHEDULES)}")
        for name, cron in self.schedules.items():
            try:
                CronSchedule(cron=cron, timezone=self.timezone)
            except ValidationError:
                raise ValueError(f"RetrainConfig.schedules[{name!r}] is not a valid cron string for time zone "
                                 f"{self.timezone!r}: {cron!r}") from None
        if self.promotion_margin < 0:
            raise ValueError(f"RetrainConfig.promotion_margin must be at least 0, got {self.promotion_margin}")
        if self.degradation_alert < 0:
            raise ValueError(f"RetrainConfig.degradation_alert must be at least 0, got {self.degradation_alert}")
        if self.vocabulary_growth_threshold < 0:
            raise ValueError("RetrainConfig.vocabulary_growth_threshold must be at least 0, "
                             f"got {self.vocabulary_growth_threshold}")
        for name in ("holdout_days", "min_holdout_users", "keep_releases", "keep_recommendation_days",
                     "keep_quarantine_days", "keep_run_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetrainConfig.{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)
