"""The embedded Hive metastore: lifecycle, sharing across objects, loopback bind, round trip.

JVM start-ups are slow (and the test machine has 2 cores), so the lifecycle test starts one
private service and checks everything about start/reuse/stop on it; the other real-stack
tests share the session's ``catalog_service``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from backfill.errors import EnvironmentProblem
from cluster.catalog import ResolvedCatalog, load_pyiceberg_catalog
from cluster.java import find_java, pyspark_jars_dir
from cluster.metastore import EmbeddedMetastore

# ---------------------------------------------------------------------- no JVM needed


def test_find_java_prefers_java_home(tmp_path, monkeypatch):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert find_java() == str(java)


def test_find_java_says_how_to_install_java(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="Java 17"):
        find_java()


def test_pyspark_jars_dir_holds_the_metastore():
    jars = pyspark_jars_dir()
    assert any(jars.glob("hive-metastore-2.3.*.jar"))
    assert any(jars.glob("derby-*.jar"))


def test_stale_state_file_is_not_running(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    state_dir = tmp_path / ".metastore"
    state_dir.mkdir()
    (state_dir / "state.json").write_text(
        json.dumps({"pid": int(done.stdout), "host": "127.0.0.1", "port": 1}))
    metastore = EmbeddedMetastore(tmp_path)
    assert not metastore.is_running()
    metastore.stop()  # idempotent on a stale state
    assert not (state_dir / "state.json").exists()


def test_server_dying_at_start_up_raises_with_the_log_tail(tmp_path, monkeypatch):
    fake_home = tmp_path / "jdk"
    java = fake_home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'fake java: cannot start' >&2\nexit 1\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    metastore = EmbeddedMetastore(tmp_path / "wh", startup_timeout=60)
    with pytest.raises(EnvironmentProblem) as info:
        metastore.start()
    message = str(info.value)
    assert "exited during start-up" in message
    assert "fake java: cannot start" in message
    assert not metastore.is_running()
    assert not metastore.state_path.exists()


# ---------------------------------------------------------------------- real service


def _listeners(port: int) -> list[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp{,6}, state 0A = LISTEN)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.append(address if len(address) == width else "?")
    return found


def _other_local_ip() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            ip = sock.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


@pytest.mark.spark
def test_start_reuse_and_stop(tmp_path):
    warehouse = tmp_path / "warehouse"
    first, second = EmbeddedMetastore(warehouse), EmbeddedMetastore(warehouse)
    try:
        # Two starters at once (the file lock serialises them): one server, one URI.
        with ThreadPoolExecutor(2) as pool:
            uris = list(pool.map(lambda m: m.start(), (first, second)))
        assert uris[0] == uris[1] == first.uri
        assert uris[0].startswith("thrift://127.0.0.1:")
        state = json.loads(first.state_path.read_text())
        assert first.port == state["port"] == int(uris[0].rsplit(":", 1)[1])

        third = EmbeddedMetastore(str(warehouse))
        assert third.is_running()
        assert third.start() == uris[0]
        assert json.loads(third.state_path.read_text())["pid"] == state["pid"]
        assert (warehouse / ".metastore" / "metastore_db").is_dir()
        assert (warehouse / ".metastore" / "conf" / "hive-site.xml").is_file()
    finally:
        first.stop()
    assert not first.is_running() and not second.is_running()
    assert not first.state_path.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(state["pid"], 0)  # supervisor and its JVM are gone
    second.stop()  # idempotent


@pytest.mark.spark
def test_service_listens_on_loopback_only(catalog_service):
    port = catalog_service.port
    assert port is not None
    listeners = _listeners(port)
    if not listeners:
        pytest.skip("no /proc/net/tcp on this platform")
    loopback_v4 = "0100007F"  # 127.0.0.1, little-endian hex
    loopback_v4_mapped = "0000000000000000FFFF00000100007F"
    assert set(listeners) <= {loopback_v4, loopback_v4_mapped}, listeners
    other_ip = _other_local_ip()
    if other_ip:
        with pytest.raises(OSError):
            socket.create_connection((other_ip, port), timeout=2).close()


@pytest.mark.spark
def test_pyiceberg_round_trip_through_the_service(catalog_service):
    resolved = ResolvedCatalog(
        "roundtrip", "hive",
        {"uri": catalog_service.uri, "warehouse": catalog_service.warehouse_dir.as_uri()},
        pyiceberg_extra={"hive.hive2-compatible": "true"},
    )
    catalog = load_pyiceberg_catalog(resolved)
    catalog.create_namespace_if_not_exists("rt_db")
    assert ("rt_db",) in catalog.list_namespaces()
    schema = pa.schema([("acct", pa.int64()), ("month_partition", pa.string()),
                        ("balance", pa.decimal128(18, 2))])
    table = catalog.create_table("rt_db.accounts", schema=schema)
    rows = pa.table({"acct": [1, 2], "month_partition": ["2024-01", "2024-02"],
                     "balance": pa.array([10, 20], pa.decimal128(18, 2))}, schema=schema)
    table.append(rows)  # a Hive commit: takes and releases a metastore lock
    table.append(rows.slice(0, 1))

    reread = load_pyiceberg_catalog(resolved).load_table("rt_db.accounts")
    got = reread.scan().to_arrow().sort_by([("acct", "ascending")])
    assert got.column("acct").to_pylist() == [1, 1, 2]
    assert len(reread.history()) == 2
    assert reread.location().startswith(catalog_service.warehouse_dir.as_uri().rstrip("/")
                                        .replace("file:///", "file:/"))
