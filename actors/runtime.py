"""Connecting to Ray: the one place that decides which Ray a run uses and how big a local one is.

A driver on a cluster connects to it (``--ray-address`` or ``RAY_ADDRESS``, as
``ray job submit`` sets it); anywhere else a local instance is started, sized so that
the run's Spark sessions fit (each partition actor needs its own CPUs plus its
executors'), however few cores the machine reports.
"""

from __future__ import annotations

import os

from backfill.config import Config


def local_cpus(cfg: Config) -> int:
    """CPUs to give a local Ray instance: enough for every session the run may start."""
    s = cfg.spark
    per_session = cfg.run.actor_cpus + s.num_executors * s.executor_cores + 1
    sessions = -(-cfg.max_parallel // cfg.run.partitions_per_actor)
    return max(os.cpu_count() or 2, int(sessions * per_session) + 1)


def ensure_ray(cfg: Config) -> None:
    """Connect to the configured Ray cluster, or start a local instance; no-op when connected."""
    import ray  # heavy: imported only by code that runs on Ray

    if ray.is_initialized():
        return
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": a new instance even when `ray start` left a cluster on this machine (Ray
        # would attach to it, and then refuse num_cpus); a cluster is named by its address
        ray.init(address="local", num_cpus=local_cpus(cfg), include_dashboard=False, log_to_driver=False)
