"""The scheduled deployments: ingest, nightly segment adapters, weekly retraining, daily scoring.

Each deployment runs one flow with the pipeline config as its parameter, on the cron
schedule that ``retraining.schedules`` of the config names:

    ingest     flows.retrain.ingest_flow           new raw files into the store
    segments   flows.retrain.retrain_flow          adapters of segments whose data changed
    retrain    flows.retrain.retrain_flow          base_due=True: the base model and every adapter
    score      flows.score_promoted.score_promoted_flow   every user, with the promoted release

``serve_deployments`` registers them with the Prefect API that ``PREFECT_API_URL`` names
and runs their flow runs in this process until it is stopped. ``deploy_to_work_pool``
registers them with a work pool instead, whose workers run them. Each deployment allows one
flow run at a time, and a run scheduled while another is running waits for it.

    python -m flows.deploy --config flows/configs/movielens.yaml
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import Flow, serve  # noqa: E402
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy  # noqa: E402
from prefect.client.schemas.schedules import CronSchedule  # noqa: E402
from prefect.deployments.runner import RunnerDeployment  # noqa: E402

from flows.retrain import ingest_flow, retrain_flow  # noqa: E402
from flows.score_promoted import score_promoted_flow  # noqa: E402
from recsys_peft.config import PipelineConfig  # noqa: E402

# Deployment name -> (flow, parameters besides the config, description).
DEPLOYMENTS: dict[str, tuple[Flow, dict, str]] = {
    "ingest": (ingest_flow, {}, "Ingest new raw files into the store."),
    "segments": (retrain_flow, {"base_due": False},
                 "Retrain the adapters of segments whose data changed; the base model only when the vocabulary "
                 "outgrew it. Promote only a better candidate."),
    "retrain": (retrain_flow, {"base_due": True},
                "Retrain the base model and every adapter; promote only a better candidate."),
    "score": (score_promoted_flow, {}, "Score every user with the promoted release."),
}
TAGS = ["recsys-peft"]
REPO_ROOT = Path(__file__).resolve().parents[1]


def build_deployments(config: PipelineConfig, names: Sequence[str] | None = None,
                      schedules: bool = True) -> list[RunnerDeployment]:
    """Build the deployments ``names`` (default: all), scheduled by ``config.retraining.schedules``.

    With ``schedules`` False they run only when triggered, for example by ``run_deployment``.
    """
    names = list(names) if names else list(DEPLOYMENTS)
    unknown = sorted(set(names) - set(DEPLOYMENTS))
    if unknown:
        raise ValueError(f"unknown deployments {unknown}; expected some of {sorted(DEPLOYMENTS)}")
    settings = config.retraining
    deployments = []
    for name in names:
        flow, parameters, description = DEPLOYMENTS[name]
        cron = settings.schedules.get(name)
        deployments.append(flow.to_deployment(
            name=name,
            schedules=[CronSchedule(cron=cron, timezone=settings.timezone)] if cron and schedules else None,
            parameters={"config": config.to_dict(), **parameters},
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=description,
            tags=TAGS,
        ))
    return deployments


def deploy_to_work_pool(config: PipelineConfig, work_pool: str, names: Sequence[str] | None = None,
                        schedules: bool = True) -> list[str]:
    """Register the deployments with a work pool, whose workers load the flows from this repository.

    A ``process`` pool's worker must run on a machine that has this repository at the same
    path. Returns the deployment ids.
    """
    ids = []
    for deployment in build_deployments(config, names, schedules):
        flow = DEPLOYMENTS[deployment.name][0]
        entrypoint = f"flows/{flow.fn.__module__.rsplit('.', 1)[-1]}.py:{flow.fn.__name__}"
        source = Flow.from_source(source=str(REPO_ROOT), entrypoint=entrypoint)
        ids.append(str(source.deploy(
            name=deployment.name, work_pool_name=work_pool, parameters=deployment.parameters,
            schedules=[s.schedule for s in deployment.schedules] or None, description=deployment.description,
            tags=TAGS, concurrency_limit=deployment.concurrency_limit, build=False, push=False, print_next_steps=False,
        )))
    return ids


def serve_deployments(config: PipelineConfig, names: Sequence[str] | None = None, schedules: bool = True,
                      limit: int | None = None) -> None:
    """Register the deployments and run their flow runs in this process until it is stopped.

    ``limit`` caps the flow runs that run at once in this process (None: no cap).
    """
    serve(*build_deployments(config, names, schedules), limit=limit)


def main(argv: list[str] | None = None) -> None:
    from recsys_peft.config_file import load_config

    parser = argparse.ArgumentParser(description="Serve the scheduled recsys-peft deployments against the "
                                                 "Prefect API in PREFECT_API_URL.")
    parser.add_argument("--config", default=None, help="pipeline config YAML (default: the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. retraining.promotion_margin=0.01 (repeatable)")
    parser.add_argument("--only", default="", help=f"comma-separated deployments to serve (default: all of "
                                                   f"{','.join(DEPLOYMENTS)})")
    parser.add_argument("--no-schedules", action="store_true", help="register without cron schedules")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    names = [name for name in args.only.split(",") if name] or None
    serve_deployments(config, names, schedules=not args.no_schedules)


if __name__ == "__main__":
    main()
