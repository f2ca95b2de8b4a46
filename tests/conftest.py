"""Shared fixtures: one Ray instance and one catalog service for the whole test session.

Real-stack tests are marked ``spark`` (JVM, RayDP, embedded metastore) and/or ``ray``;
fast unit tests carry no marker. Start-ups are slow (a metastore ~10 s, a RayDP session
~15 s), so they are paid once per session here. The production-shaped stacks of
``tests/stacks.py`` (SeaweedFS's REST catalog on S3, a JDBC catalog on PostgreSQL) start on
first use and skip, saying what to install, where they cannot run.
"""

from __future__ import annotations

import logging
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


def _stack(stack_class):
    from tests.stacks import missing

    reason = missing(stack_class)
    if reason:
        pytest.skip(reason)
    stack = stack_class()
    stack.start()
    logging.getLogger(__name__).info("%r started in %.1f s", stack, stack.started_seconds)
    return stack


@pytest.fixture(scope="session")
def seaweed_stack():
    """SeaweedFS on loopback for the session: S3 and an Iceberg REST catalog (tests/stacks.py)."""
    from tests.stacks import SeaweedStack

    stack = _stack(SeaweedStack)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def postgres_stack():
    """A private PostgreSQL on loopback for the session: an Iceberg JDBC catalog (tests/stacks.py)."""
    from tests.stacks import PostgresStack

    stack = _stack(PostgresStack)
    yield stack
    stack.stop()
