"""A Ray address nobody answers at is an environment problem named in seconds (exit 5),
not a traceback with exit 1 after minutes of Ray retrying (found by the whole-process
benchmark: `--ray-address` of a cluster refusing the connection)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from actors.runtime import check_reachable
from backfill.errors import EnvironmentProblem, ExitCode

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is


def test_an_address_nobody_listens_at_is_named():
    port = _closed_port()
    with pytest.raises(EnvironmentProblem, match=rf"127\.0\.0\.1:{port}.*ray start --head"):
        check_reachable(f"127.0.0.1:{port}")


@pytest.mark.parametrize("address", ["auto", "local", "ray://head:10001x", "no-port-here"])
def test_addresses_ray_resolves_itself_are_left_to_ray(address):
    check_reachable(address)  # nothing to check here; Ray's own error then applies


def test_the_cli_names_it_and_exits_5():
    # its own process: this one may already be connected to a Ray instance of another test
    address = f"127.0.0.1:{_closed_port()}"
    proc = subprocess.run([sys.executable, "-m", "backfill", "sessions", "--ray-address", address],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == ExitCode.ENVIRONMENT, proc.stderr[-2000:]
    assert "no Ray cluster answers" in proc.stderr
