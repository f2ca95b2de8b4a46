"""Shared fixtures: one Ray instance and one catalog service for the whole test session.

Real-stack tests are marked ``spark`` (JVM, RayDP, embedded metastore) and/or ``ray``;
fast unit tests carry no marker. Start-ups are slow (a metastore ~10 s, a RayDP session
~15 s), so they are paid once per session here.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance with more logical CPUs than cores, so several RayDP sessions fit."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never attach to a cluster another process started with `ray start`
            num_cpus=int(os.environ.get("BACKFILL_TEST_RAY_CPUS", "16")),
            include_dashboard=False,
            log_to_driver=False,
            namespace="iceberg_backfill_tests",
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def catalog_service(tmp_path_factory):
    """One embedded Hive metastore (Derby under a temporary warehouse) for the session."""
    from cluster.metastore import EmbeddedMetastore

    warehouse = tmp_path_factory.mktemp("warehouse")
    metastore = EmbeddedMetastore(warehouse)
    metastore.start()
    yield metastore
    metastore.stop()
