"""Client side of the embedded Hive Metastore (thrift) service: start, reuse, stop.

Why a metastore at all: Iceberg's ``hadoop`` catalog loses commits when several processes
commit at once, and JDBC-on-SQLite fails with SQLITE_BUSY; a Hive Metastore serialises
commits with metastore locks, and both Spark and pyiceberg speak to it. pyspark ships
everything a Hive 2.3.9 metastore server needs (with Derby), so no extra download is
required.

The service runs in a detached process group (a small Python supervisor holding the py4j
gateway, and its JVM) so that it outlives the command that started it: ``setup`` starts
it and a later ``backfill`` reuses it through the state file. This module only spawns,
finds, waits for and kills that process; what runs inside it (the server assembled through
reflection so that it binds to loopback) is :mod:`cluster.metastore_server`.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backfill.errors import EnvironmentProblem
from cluster import metastore_server
from cluster.java import find_java, java_home_of, pyspark_jars_dir

LOOPBACK = "127.0.0.1"
STATE_DIR_NAME = ".metastore"
#: Module the supervisor process runs (``python -m SERVER_MODULE serve ...``).
SERVER_MODULE = metastore_server.__name__
#: What a live supervisor's command line contains: services started before the server side
#: moved to its own module ran ``-m cluster.metastore``, and must still be found and stopped.
_SUPERVISOR_MARKERS = (SERVER_MODULE, "cluster.metastore")
#: Environment variables that would point the gateway JVM at another Spark, a running
#: gateway or foreign Hadoop/Hive configuration.
_FOREIGN_ENV = (
    "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "PYSPARK_SUBMIT_ARGS", "SPARK_HOME",
    "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "HIVE_CONF_DIR", "SPARK_CLASSPATH",
)
_LOG_TAIL_LINES = 30


class EmbeddedMetastore:
    """A Hive metastore thrift service for one local warehouse, shared across processes.

    Everything lives under ``<warehouse>/.metastore/``: the Derby database
    (``metastore_db``), the generated configuration (``conf/``), the server log
    (``metastore.log``) and ``state.json`` (pid and port of the running service).
    """

    def __init__(
        self,
        warehouse_dir: Path | str,
        host: str = LOOPBACK,
        port: int | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.warehouse_dir = Path(warehouse_dir).expanduser().resolve()
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.state_dir = self.warehouse_dir / STATE_DIR_NAME
        self.log_path = self.state_dir / "metastore.log"
        self.state_path = self.state_dir / "state.json"
        self._lock_path = self.state_dir / "start.lock"
        #: Last port used, kept across stop/start so the catalog URI stays the same.
        self._port_path = self.state_dir / "port"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedMetastore({str(self.warehouse_dir)!r}, port={self.port})"

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int | None:
        """Port of the running service (from the state file), else the requested one."""
        state = self._read_state()
        return int(state["port"]) if state else self.requested_port

    @property
    def uri(self) -> str:
        """``thrift://host:port`` of the running service."""
        state = self._read_state()
        if not state:
            raise EnvironmentProblem(
                f"the embedded catalog for {self.warehouse_dir} is not running: start it with "
                "`iceberg-backfill catalog start`"
            )
        return f"thrift://{state['host']}:{state['port']}"

    def is_running(self) -> bool:
        """True when the state file names a live service whose port accepts connections."""
        state = self._read_state()
        if not state:
            return False
        return self._pid_alive(int(state["pid"])) and _port_open(state["host"], int(state["port"]))

    def start(self) -> str:
        """Start the service (or reuse the running one) and return its thrift URI.

        Returns only once a real thrift call succeeds. Raises EnvironmentProblem (with the
        last lines of the server log) when Java is missing or the server cannot start.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = self._read_state()
            if state and self._pid_alive(int(state["pid"])):
                # Alive: ready, or still starting under a starter that died; wait for it.
                try:
                    self._wait_ready(int(state["pid"]), state["host"], int(state["port"]))
                    return self.uri
                except EnvironmentProblem:
                    self._kill_group(int(state["pid"]))
            self._remove_state()
            find_java()
            pyspark_jars_dir()
            port = self.requested_port or self._previous_port() or _free_port(self.host)
            pid = self._spawn(port)
            self._port_path.write_text(str(port))
            self._write_state({"pid": pid, "host": self.host, "port": port,
                               "warehouse": str(self.warehouse_dir), "started_at": time.time()})
            try:
                self._wait_ready(pid, self.host, port)
            except BaseException:
                self._kill_group(pid)
                self._remove_state()
                raise
            return self.uri

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the service (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        if not self.state_dir.is_dir():
            return
        with self._locked():
            state = self._read_state()
            if state and self._pid_alive(int(state["pid"])):
                self._kill_group(int(state["pid"]), timeout)
            self._remove_state()
            self._proc = None

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop across processes: one server per warehouse (Derby is single-JVM)."""
        with open(self._lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
            return state if {"pid", "host", "port"} <= set(state) else None
        except (OSError, ValueError):
            return None

    def _write_state(self, state: Mapping[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def _remove_state(self) -> None:
        self.state_path.unlink(missing_ok=True)

    def _pid_alive(self, pid: int) -> bool:
        """Alive, not a zombie, and (where /proc exists) really our supervisor, not a reused pid."""
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: poll() is exact (and /proc/<pid>/cmdline may still show this
            # process's command line until the child has exec'd).
            return self._proc.poll() is None
        self._reap(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process: a reused pid
        proc = Path(f"/proc/{pid}")
        if proc.is_dir():
            try:
                if ") Z" in (proc / "stat").read_text():
                    return False
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                return False
            return any(m in cmdline for m in _SUPERVISOR_MARKERS) and str(self.state_dir) in cmdline
        return True

    def _reap(self, pid: int) -> None:
        """Collect our own exited child so it does not linger as a zombie."""
        if self._proc is not None and self._proc.pid == pid:
            self._proc.poll()
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def _previous_port(self) -> int | None:
        """The port this warehouse's service used last time, if it is free now."""
        try:
            port = int(self._port_path.read_text())
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # as the JVM's ServerSocket does: connections of a killed server linger in
                # TIME_WAIT, and must not push the restarted service onto another port
                # (running Spark sessions keep the old URI and reconnect to it)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, port))
            return port
        except (OSError, ValueError):
            return None

    def _spawn(self, port: int) -> int:
        """Start the supervisor detached (own session) with output to the log file."""
        if self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
        root = str(Path(__file__).resolve().parents[1])
        env["SPARK_LOCAL_IP"] = self.host  # no SparkContext; silences a hostname warning
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        java = find_java()
        if "JAVA_HOME" not in env:  # spark-submit uses JAVA_HOME if set, else PATH
            env["JAVA_HOME"] = java_home_of(java)
        cmd = [sys.executable, "-m", SERVER_MODULE, "serve", str(self.state_dir),
               str(self.warehouse_dir), self.host, str(port)]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.state_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        return self._proc.pid

    def _wait_ready(self, pid: int, host: str, port: int) -> None:
        """Block until the port accepts connections and a thrift call succeeds."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self._pid_alive(pid):
                raise self._startup_failure("exited during start-up")
            if _port_open(host, port):
                try:
                    _thrift_probe(f"thrift://{host}:{port}")
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = exc
            time.sleep(0.5)
        detail = f" (last thrift error: {last_error})" if last_error else ""
        raise self._startup_failure(
            f"did not answer on {host}:{port} within {self.startup_timeout:.0f} s{detail}"
        )

    def _startup_failure(self, what: str) -> EnvironmentProblem:
        return EnvironmentProblem(
            f"the embedded Hive metastore for {self.warehouse_dir} {what}. Check that Java 17 "
            f"works (`java -version`), that {self.state_dir} is writable and that no other "
            "process uses this warehouse's metastore (stop it with `iceberg-backfill catalog "
            f"stop`). Full log: {self.log_path}. Last lines:\n{_tail(self.log_path)}"
        )

    def _kill_group(self, pid: int, timeout: float = 30.0) -> None:
        """SIGTERM the supervisor's process group (it and its JVM), SIGKILL after ``timeout``."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap(pid)
                try:
                    os.killpg(pid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                time.sleep(0.1)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _thrift_probe(uri: str) -> None:
    """One real metastore call: proves the handler, not just the socket, is up."""
    from pyiceberg.catalog.hive import HiveCatalog

    HiveCatalog("metastore-probe", uri=uri).list_namespaces()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    return "\n".join(text[-lines:]) or "(log is empty)"
