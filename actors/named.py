"""Finding and ending named partition actors (warm ones in particular) by name.

Below both the partition actor module (whose one-off sessions end idle warm ones first, to
free their CPUs) and :mod:`actors.warm` (which leases them), so neither imports the other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Name prefix of warm partition actors; the session key and a random suffix follow.
WARM_PREFIX = "backfill-warm-"
#: How long a lease or describe call may take before the actor counts as unavailable.
CALL_TIMEOUT_SECONDS = 10.0


def named(namespace: str, prefix: str) -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == namespace and a["name"].startswith(prefix))


def handles(namespace: str, names: Iterable[str]) -> list[tuple[str, Any]]:
    """Handles of the named actors still there (one may end between listing and lookup)."""
    import ray

    out = []
    for name in names:
        try:
            out.append((name, ray.get_actor(name, namespace=namespace)))
        except ValueError:
            continue
    return out


def answers(calls: list[tuple[str, Any]]) -> dict[str, Any]:
    """The results of remote calls that answered in time, by actor name (others: left out)."""
    import ray
    from ray.exceptions import RayError

    refs = {ref: name for name, ref in calls}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=CALL_TIMEOUT_SECONDS)
    out = {}
    for ref in ready:
        try:
            out[refs[ref]] = ray.get(ref)
        except RayError as exc:
            log.warning("%s did not answer: %s", refs[ref], str(exc)[:300])
            continue
    return out


def end_actor(handle: Any) -> None:
    """Stop an actor's Spark session, then the actor (already gone: nothing to do)."""
    import ray

    try:
        ray.get(handle.shutdown.remote(), timeout=60)
    except Exception:  # noqa: BLE001 - it is killed next anyway
        pass
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already dead
        pass


def end_idle(namespace: str, keep_key: str | None = None) -> list[str]:
    """End the warm actors no run holds, except those of ``keep_key``; their names.

    Each is leased first, so a run cannot take it while it is being ended.
    """
    evictor = f"ending-{uuid.uuid4().hex[:8]}"
    keep = f"{WARM_PREFIX}{keep_key}-" if keep_key else None
    found = [(n, h) for n, h in handles(namespace, named(namespace, WARM_PREFIX))
             if keep is None or not n.startswith(keep)]
    taken = answers([(n, h.lease.remote(evictor, None)) for n, h in found])
    ended = []
    for name, handle in found:
        if taken.get(name):
            end_actor(handle)
            ended.append(name)
    if ended:
        log.info("ended %d idle warm session(s): %s", len(ended), ", ".join(ended))
    return ended


def make_room(namespace: str, cpus: float, keep_key: str | None = None) -> list[str]:
    """End idle warm sessions (except those of ``keep_key``) only when the cluster has fewer
    than ``cpus`` CPUs free for a new session; their names. Idle sessions that do not stand
    in anyone's way stay warm."""
    import ray

    if ray.available_resources().get("CPU", 0.0) >= cpus:
        return []
    return end_idle(namespace, keep_key)
