"""Fixtures shared by the fast unit tests."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

import actors.runtime
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


class _FakeRay:
    """The two questions ``actors.runtime.engine_for`` asks Ray: is it initialised, and what
    is its GCS address. A unit test must not depend on whether the integration tests of the
    same pytest process left a Ray instance running."""

    def __init__(self, address: str | None) -> None:
        self.address = address

    def is_initialized(self) -> bool:
        return self.address is not None

    def get_runtime_context(self) -> SimpleNamespace:
        return SimpleNamespace(gcs_address=self.address)


@pytest.fixture
def ray_at(monkeypatch):
    """``ray_at(address, own=None)``: Ray as ``engine_for`` sees it (None: not initialised;
    ``own``: the address of the instance this process started), no RAY_ADDRESS."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def connect(address: str | None, own: str | None = None) -> None:
        monkeypatch.setitem(sys.modules, "ray", _FakeRay(address))
        monkeypatch.setattr(actors.runtime, "_own_instance", own)
    return connect
