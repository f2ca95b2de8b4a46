"""Fixtures shared by the fast unit tests."""

from __future__ import annotations

import pytest

from backfill.cli import options


@pytest.fixture
def traps(monkeypatch):
    """Fail the test if a command opens a catalog, resolves one, or starts Ray."""
    import ray

    import actors.runtime
    import cluster.catalog

    calls: list[str] = []

    def trap(name):
        def fail(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} must not run for rejected input or options")
        return fail

    monkeypatch.setattr(options, "catalog_from_config", trap("catalog_from_config"))
    monkeypatch.setattr(cluster.catalog, "resolve_catalog", trap("resolve_catalog"))
    monkeypatch.setattr(cluster.catalog, "load_pyiceberg_catalog", trap("load_pyiceberg_catalog"))
    monkeypatch.setattr(actors.runtime, "ensure_ray", trap("ensure_ray"))
    monkeypatch.setattr(ray, "init", trap("ray.init"))
    return calls
