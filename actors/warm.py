"""Warm Spark sessions: partition actors that outlive a run so the next one skips the start-up.

A RayDP session costs ~15 s to start and its first MERGE runs on a cold JVM; an operator
who runs several backfills (or a cluster that serves many) pays that once per run
without this. With ``[run] keep_warm_seconds`` > 0 a run's partition actors are named by
the *session key* (what fixes a Spark session: the catalog's Spark settings, the Spark
sizing and jar, the actor's CPUs and threads) instead of by the run, and released rather
than ended when the run is over. The next run with the same key leases them (see
:mod:`actors.lease`) and binds its own table configuration; each actor ends itself once
idle for ``keep_warm_seconds``.

On a cluster the driver connects to (``ray job submit``, ``--ray-address``) warm actors
are detached, so they outlive the driver's job. On a Ray instance the driver started
itself they are ordinary actors of the driver: they serve later runs of the same process
(the Python API, a notebook, the tests) and end with it, as that Ray instance does.

Idle warm actors of *another* key hold CPUs a new session may need, so they are ended
before a new actor is started.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.lease import RENEW_SECONDS
from actors.named import CALL_TIMEOUT_SECONDS, WARM_PREFIX, answers, handles, make_room, named
from actors.partition_actor import start_worker
from actors.runtime import cpu_budget, session_cpus, sized, with_cores
from backfill.config import Config
from backfill.core.sizing import MAX_AUTO_EXECUTOR_CORES
from cluster.jars import iceberg_runtime_jar

log = logging.getLogger(__name__)



def session_key(cfg: Config, catalog_spark_conf: Mapping[str, str]) -> str:
    """What makes two runs' Spark sessions interchangeable, as a short hash.

    Tables, columns and run options are not in it: they come with each lease. Secrets of
    the catalog settings are hashed with the rest, never shown.
    """
    spark = {f.name: getattr(cfg.spark, f.name) for f in dataclasses.fields(cfg.spark)}
    spark["conf"] = dict(sorted(dict(cfg.spark.conf).items()))
    spec = {"catalog": dict(sorted(catalog_spark_conf.items())), "spark": spark,
            "jar": str(iceberg_runtime_jar(cfg.spark.iceberg_jar)),
            "actor_cpus": cfg.run.actor_cpus, "threads": cfg.run.partitions_per_actor}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def sized_for_run(cfg: Config, catalog_spark_conf: Mapping[str, str], sessions: int) -> Config:
    """``cfg`` with its executors' size decided for a run of ``sessions`` sessions.

    Unset cores are those of a warm session of otherwise the same settings when one is
    kept (the free CPUs, which it holds, would size a new one smaller and miss it), else
    the free CPUs' share (:func:`actors.runtime.sized`).
    """
    budget = cpu_budget(cfg)
    if cfg.spark.executor_cores is not None or cfg.run.keep_warm_seconds <= 0:
        return sized(cfg, sessions, budget)
    names = named(cfg.run.checkpoint_namespace, WARM_PREFIX)
    for cores in range(1, MAX_AUTO_EXECUTOR_CORES + 1):
        candidate = sized(with_cores(cfg, cores), sessions, budget)
        if any(n.startswith(f"{WARM_PREFIX}{session_key(candidate, catalog_spark_conf)}-") for n in names):
            return candidate
    return sized(cfg, sessions, budget)


@dataclass(frozen=True)
class WarmSession:
    """One warm partition actor, as ``sessions`` lists it."""

    name: str
    pid: int
    node: str
    holder: str | None
    idle_seconds: float
    keep_warm_seconds: float


def list_sessions(namespace: str) -> list[WarmSession]:
    """The warm actors of ``namespace`` that answered, with their state."""
    found = handles(namespace, named(namespace, WARM_PREFIX))
    seen = answers([(n, h.describe.remote()) for n, h in found])
    return [WarmSession(**seen[n]) for n, _ in found if n in seen]


#: Handles of this process's non-detached warm actors. Ray ends an actor that is not
#: detached once no handle to it is left, so the process keeps one for as long as it runs
#: (a run's own handles go with its executor); entries of ended actors are pruned.
_KEPT: dict[str, Any] = {}


def _keep(name: str, handle: Any, namespace: str) -> None:
    for gone in set(_KEPT) - set(named(namespace, WARM_PREFIX)):
        del _KEPT[gone]
    _KEPT[name] = handle


class WarmPool:
    """The warm actors one run holds: leased when free, started when not, released at the end.

    Args:
        cfg: the run's configuration (bound to every actor it leases).
        catalog_spark_conf: the catalog's Spark settings (part of the session key).
        run_id: the lease holder.
        detached: start new actors detached (the driver is connected to a cluster).
        wanted: at most this many existing actors are leased up front.
    """

    def __init__(self, cfg: Config, catalog_spark_conf: Mapping[str, str], run_id: str, detached: bool,
                 wanted: int) -> None:
        self._cfg = cfg
        self._conf = dict(catalog_spark_conf)
        self._run_id = run_id
        self._detached = detached
        self._namespace = cfg.run.checkpoint_namespace
        self.key = session_key(cfg, catalog_spark_conf)
        self._held: list[Any] = []
        self._free: deque[tuple[Any, str]] = deque(self._lease_existing(wanted))
        self.reused = len(self._free)
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="warm-lease-renewal", daemon=True)
        self._renewer.start()

    def _lease_existing(self, wanted: int) -> list[tuple[Any, str]]:
        """Lease up to ``wanted`` free actors of this key (a busy or held one says no)."""
        found = handles(self._namespace, named(self._namespace, f"{WARM_PREFIX}{self.key}-"))
        got: list[tuple[Any, str]] = []
        for name, handle in found:
            if len(got) >= wanted:
                break
            if answers([(name, handle.lease.remote(self._run_id, self._cfg))]).get(name):
                got.append((handle, name))
                self._held.append(handle)
        log.debug("warm sessions of key %s: %d found, %d leased (wanted %d)", self.key, len(found), len(got), wanted)
        return got

    def make_actor(self, n: int) -> tuple[Any, str]:
        """A leased warm actor for the pool: a free one, else a new one (idle ones of other
        settings are ended first, so the new session has the CPUs it needs)."""
        if self._free:
            return self._free.popleft()
        make_room(self._namespace, session_cpus(self._cfg), keep_key=self.key)
        name = f"{WARM_PREFIX}{self.key}-{uuid.uuid4().hex[:8]}"
        options: dict[str, Any] = {"lifetime": "detached"} if self._detached else {}
        handle = start_worker(
            self._cfg, self._conf, name, self._cfg.run.keep_warm_seconds, self._run_id,
            name=name, namespace=self._namespace, num_cpus=self._cfg.run.actor_cpus, max_restarts=0,
            max_concurrency=self._cfg.run.partitions_per_actor + 1, scheduling_strategy="SPREAD", **options)
        self._held.append(handle)
        if not self._detached:
            _keep(name, handle, self._namespace)
        return handle, name

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            for handle in list(self._held):
                try:
                    handle.renew.remote(self._run_id)
                except Exception:  # noqa: BLE001 - a dead actor is the pool's business
                    continue

    def release(self) -> None:
        """Give every held actor back (idle from now; each ends itself after keep-warm)."""
        import ray

        self._stop.set()
        refs = []
        for handle in self._held:
            try:
                refs.append(handle.release.remote(self._run_id))
            except Exception:  # noqa: BLE001 - dead already
                continue
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=CALL_TIMEOUT_SECONDS)
        self._held.clear()
