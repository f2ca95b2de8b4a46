"""Connecting to Ray: the one place that decides which Ray a run uses and how big a local one is.

A driver on a cluster connects to it (``--ray-address`` or ``RAY_ADDRESS``, as
``ray job submit`` sets it); anywhere else a local instance is started, sized so that
the run's Spark sessions fit (each partition actor needs its own CPUs plus its
executors'), however few cores the machine reports.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket

from backfill.config import ENGINE_AUTO, ENGINE_LOCAL, ENGINE_RAYDP, Config
from backfill.core.sizing import SessionBudget
from backfill.errors import EnvironmentProblem

#: Seconds to wait for a TCP answer from a Ray cluster's address before giving up.
CONNECT_TIMEOUT_SECONDS = 5.0
_HOST_PORT = re.compile(r"^(?:ray://)?\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})$")
#: How the run's lines name a session of each engine.
ENGINE_NAMES = {ENGINE_RAYDP: "RayDP", ENGINE_LOCAL: "local"}
#: About how long a session of each engine takes to start on an idle machine (the run's
#: start line says it; measured on 2 cores, README "Performance").
ENGINE_START_SECONDS = {ENGINE_RAYDP: 15, ENGINE_LOCAL: 3}
#: GCS address of the local Ray instance this process started (:func:`ensure_ray`), if any:
#: what ``[spark] engine = "auto"`` asks, since only such a run is alone on its machine.
_own_instance: str | None = None


def session_cpus(cfg: Config) -> float:
    """Ray CPUs one partition actor and its Spark session take (the actor, its executors, one
    spare); ``cfg`` has its executor cores decided (:func:`sized`)."""
    s = cfg.spark
    if s.executor_cores is None:
        raise ValueError("executor cores are decided by sized() before sessions are counted")
    return cfg.run.actor_cpus + s.num_executors * s.executor_cores + 1


def sessions_for(cfg: Config, merges: int) -> int:
    """Spark sessions (partition actors) a run of ``merges`` MERGEs starts at most."""
    return -(-min(cfg.max_parallel, merges) // cfg.run.partitions_per_actor)


def with_cores(cfg: Config, cores: int) -> Config:
    return dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, executor_cores=cores))


def _memory_mib() -> float:
    """This machine's memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def local_budget() -> SessionBudget:
    """This machine's cores and memory, for a Ray instance that is not a cluster the run
    connected to (its logical CPUs are sized to fit the sessions: the cores are what count)."""
    cores = os.cpu_count() or 2
    # each session's Spark driver (planning, the cold JVM's compiler) needs a core of its own:
    # measured on 2 cores, 2 executor cores beside it made every run slower (README "Performance")
    return SessionBudget(free=cores, largest_node=cores, reserved_per_session=1, node_memory_mib=_memory_mib(),
                         source=f"this machine's {cores} core(s)")


def cluster_budget(cfg: Config) -> SessionBudget:
    """The connected cluster's free CPUs now (each session also needs its actor's CPUs and a
    spare) and its largest node's memory."""
    import ray

    available = ray.available_resources()
    free = float(available.get("CPU", 0.0))
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return SessionBudget(free=free, largest_node=max((float(n.get("CPU", 0.0)) for n in nodes), default=free),
                         reserved_per_session=cfg.run.actor_cpus + 1,
                         node_memory_mib=max((float(n.get("memory", 0.0)) for n in nodes), default=0.0) / 2**20,
                         source=f"the cluster's {free:g} free CPU(s)")


def cpu_budget(cfg: Config) -> SessionBudget:
    """Where automatically sized sessions take their cores and memory from (a cluster needs
    Ray connected)."""
    return cluster_budget(cfg) if cluster_address(cfg) else local_budget()


def sized(cfg: Config, sessions: int, budget: SessionBudget | None = None) -> Config:
    """``cfg`` with ``[spark] executor_cores`` and ``executor_memory`` decided for a run of
    ``sessions`` sessions: as configured, else the budget's share (:mod:`backfill.core.sizing`)."""
    s = cfg.spark
    if s.executor_cores is not None and s.executor_memory is not None:
        return cfg
    budget = budget or cpu_budget(cfg)
    cores = s.executor_cores or budget.executor_cores(sessions, s.num_executors)
    memory = s.executor_memory or budget.executor_memory(cores)
    return dataclasses.replace(cfg, spark=dataclasses.replace(s, executor_cores=cores, executor_memory=memory))


def local_cpus(cfg: Config) -> int:
    """CPUs to give a local Ray instance: enough for every session the run may start, with
    the cores each gets at any number of sessions up to ``max_parallel``'s."""
    most = -(-cfg.max_parallel // cfg.run.partitions_per_actor)
    needed = max(n * session_cpus(sized(cfg, n, local_budget())) for n in range(1, most + 1))
    return max(os.cpu_count() or 2, int(needed) + 1)


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
        global _own_instance
        _own_instance = ray.get_runtime_context().gcs_address


def engine_for(cfg: Config) -> str:
    """The Spark engine a run's sessions use: ``[spark] engine`` when it names one; for
    "auto", local when the run has (or will start) a Ray instance of its own on this machine,
    RayDP when it joins a cluster or a Ray that someone else started (``ray job submit``,
    the Python API on a cluster head). Measured on one machine in README "Performance":
    RayDP's app master and executor JVMs beside the actor's own only compete for its cores."""
    if cfg.spark.engine != ENGINE_AUTO:
        return cfg.spark.engine
    if cluster_address(cfg):
        return ENGINE_RAYDP
    import ray

    if not ray.is_initialized():
        return ENGINE_LOCAL  # ensure_ray will start one for this run
    return ENGINE_LOCAL if ray.get_runtime_context().gcs_address == _own_instance else ENGINE_RAYDP


def with_engine(cfg: Config) -> Config:
    """``cfg`` with ``[spark] engine`` decided (:func:`engine_for`), once, on the driver: the
    actors get a concrete engine, and warm sessions of another engine are never reused."""
    engine = engine_for(cfg)
    return cfg if engine == cfg.spark.engine else dataclasses.replace(
        cfg, spark=dataclasses.replace(cfg.spark, engine=engine))
