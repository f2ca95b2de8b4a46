"""Connecting to Ray: the one place that decides which Ray a run uses and how big a local one is.

A driver on a cluster connects to it (``--ray-address`` or ``RAY_ADDRESS``, as
``ray job submit`` sets it); anywhere else a local instance is started, sized so that
the run's Spark sessions fit (each partition actor needs its own CPUs plus its
executors'), however few cores the machine reports.
"""

from __future__ import annotations

import os
import re
import socket

from backfill.config import Config
from backfill.errors import EnvironmentProblem

#: Seconds to wait for a TCP answer from a Ray cluster's address before giving up.
CONNECT_TIMEOUT_SECONDS = 5.0
_HOST_PORT = re.compile(r"^(?:ray://)?\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})$")


def session_cpus(cfg: Config) -> float:
    """Ray CPUs one partition actor and its Spark session take (the actor, its executors, one spare)."""
    s = cfg.spark
    return cfg.run.actor_cpus + s.num_executors * s.executor_cores + 1


def sessions_for(cfg: Config, merges: int) -> int:
    """Spark sessions (partition actors) a run of ``merges`` MERGEs starts at most."""
    return -(-min(cfg.max_parallel, merges) // cfg.run.partitions_per_actor)


def local_cpus(cfg: Config) -> int:
    """CPUs to give a local Ray instance: enough for every session the run may start."""
    sessions = -(-cfg.max_parallel // cfg.run.partitions_per_actor)
    return max(os.cpu_count() or 2, int(sessions * session_cpus(cfg)) + 1)


def cluster_address(cfg: Config) -> str | None:
    """The Ray cluster a run connects to (None: it starts a local instance)."""
    return cfg.run.ray_address or os.environ.get("RAY_ADDRESS")


def check_reachable(address: str) -> None:
    """EnvironmentProblem unless something answers at ``address`` (``host:port``).

    Ray itself retries an unreachable address for minutes before it fails with a bare
    ConnectionError; "auto" and other forms Ray resolves itself are left to it.
    """
    m = _HOST_PORT.match(address)
    if m is None:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise EnvironmentProblem(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with `ray start --head`, "
            "or leave --ray-address and RAY_ADDRESS unset for a local instance") from None


def ensure_ray(cfg: Config) -> None:
    """Connect to the configured Ray cluster, or start a local instance; no-op when connected."""
    import ray  # heavy: imported only by code that runs on Ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        return
    address = cluster_address(cfg)
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, AuthenticationError) as exc:
            raise EnvironmentProblem(
                f"cannot join the Ray cluster at {address}: {str(exc)[:300]}. A cluster with token "
                "authentication needs its token here (RAY_AUTH_MODE=token and ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN); `ray job submit` passes it on") from None
    else:
        # "local": a new instance even when `ray start` left a cluster on this machine (Ray
        # would attach to it, and then refuse num_cpus); a cluster is named by its address
        ray.init(address="local", num_cpus=local_cpus(cfg), include_dashboard=False, log_to_driver=False)
