"""Let several RayDP sessions live in one Ray job: one Ray namespace per JVM app master.

Why this exists (raydp issue #386): each RayDP session starts a JVM "app master" that
joins Ray as its own driver and registers a named actor with the FIXED name
``RAY_APP_MASTER`` in the namespace it is told to use. RayDP 1.6.5 tells it to use the
caller's job namespace, so the second session of a job fails with
``IllegalArgumentException: Actor of name RAY_APP_MASTER exists``. Every partition actor
of a backfill runs its own session in the same job, so they would all collide.

The fix changes exactly one value: the ``ray.job.namespace`` entry of the JSON options
that ``RayDPSparkMaster._generate_ray_configs`` builds. Those options are read twice,
both times through that method: by the app master JVM at start-up, and (fault-tolerant
mode) by the Spark driver JVM, which looks ``RAY_APP_MASTER`` up by name. Both therefore
agree on the session's own namespace. Executors are created by the app master, so they
follow it. Nothing else in RayDP changes.

How: the method runs inside the ``<app>_SPARK_MASTER`` actor process, so patching it in
the caller's process is not enough on its own. We subclass RayDP's master class with the
one overridden method, wrap it with ``ray.remote`` (Ray ships the subclass to the actor
process), and swap it in for the module global ``raydp.spark.ray_cluster.RayDPSparkMaster``
that ``SparkCluster._set_up_master`` instantiates. The namespace is derived from the master
actor's own name (``<app>_SPARK_MASTER``, unique per app name because RayDP names it so)
and the caller's job namespace (unique per job).

This leans on RayDP internals, so it refuses any RayDP version it was not tested with
(set ``BACKFILL_ALLOW_UNTESTED_RAYDP=1`` to try anyway) and verifies at run time that the
entry it replaces is still there.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

from backfill.errors import EnvironmentProblem

#: RayDP versions whose internals this module was checked against.
TESTED_RAYDP_VERSIONS = frozenset({"1.6.5"})
ALLOW_UNTESTED_ENV = "BACKFILL_ALLOW_UNTESTED_RAYDP"
NAMESPACE_KEY = "ray.job.namespace"
MASTER_SUFFIX = "_SPARK_MASTER"  # raydp.spark.ray_cluster_master.RAYDP_SPARK_MASTER_SUFFIX
_PATCH_MARK = "__backfill_namespaced__"


def app_master_namespace(job_namespace: str, master_actor_name: str) -> str:
    """The Ray namespace for one session's JVM app master: unique per job and app name."""
    app_name = master_actor_name.removesuffix(MASTER_SUFFIX)
    return f"{job_namespace}.raydp.{app_name}"


def check_raydp_version() -> str:
    """Installed RayDP version; EnvironmentProblem if this module was not tested with it."""
    try:
        version = importlib.metadata.version("raydp")
    except importlib.metadata.PackageNotFoundError:
        raise EnvironmentProblem("raydp is not installed: `pip install raydp==1.6.5`") from None
    if version not in TESTED_RAYDP_VERSIONS and os.environ.get(ALLOW_UNTESTED_ENV) != "1":
        raise EnvironmentProblem(
            f"raydp {version} is installed, but the RAY_APP_MASTER namespace fix in "
            f"cluster/raydp_namespace.py was only tested with {sorted(TESTED_RAYDP_VERSIONS)}: "
            "install `raydp==1.6.5`, or set "
            f"{ALLOW_UNTESTED_ENV}=1 to try anyway after checking "
            "RayDPSparkMaster._generate_ray_configs still sets 'ray.job.namespace'"
        )
    return version


def namespaced_master_class() -> Any:
    """RayDP's master actor class with per-session app master namespaces (a ray ActorClass)."""
    import ray
    from raydp.spark import ray_cluster_master

    try:
        # @ray.remote replaced the module attribute by an ActorClass; this is the raw class.
        base = ray_cluster_master.RayDPSparkMaster.__ray_metadata__.modified_class
        base = base.__ray_actor_class__
        base._generate_ray_configs  # noqa: B018 - fail here, not inside the actor
    except AttributeError as exc:
        raise EnvironmentProblem(
            f"RayDP/Ray internals changed ({exc}); the RAY_APP_MASTER namespace fix in "
            "cluster/raydp_namespace.py needs updating"
        ) from None

    class NamespacedRayDPSparkMaster(base):  # type: ignore[misc, valid-type]
        """RayDPSparkMaster whose JVM app master registers in its own Ray namespace."""

        def _generate_ray_configs(self) -> str:
            options = json.loads(super()._generate_ray_configs())
            if NAMESPACE_KEY not in options:
                raise EnvironmentProblem(
                    f"RayDP no longer sets {NAMESPACE_KEY!r} for its app master; "
                    "cluster/raydp_namespace.py needs updating"
                )
            context = ray.get_runtime_context()
            options[NAMESPACE_KEY] = app_master_namespace(
                context.namespace, context.get_actor_name() or ""
            )
            return json.dumps(options)

    actor_class = ray.remote(NamespacedRayDPSparkMaster)
    setattr(actor_class, _PATCH_MARK, True)
    return actor_class


def install() -> None:
    """Make this process's next ``raydp.init_spark`` use a per-session namespace. Idempotent."""
    check_raydp_version()
    from raydp.spark import ray_cluster

    if not getattr(ray_cluster.RayDPSparkMaster, _PATCH_MARK, False):
        ray_cluster.RayDPSparkMaster = namespaced_master_class()
