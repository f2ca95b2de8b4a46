"""An embedded Hive Metastore (thrift) service, run from pyspark's own jars with Derby.

Why a metastore at all: Iceberg's ``hadoop`` catalog loses commits when several processes
commit at once, and JDBC-on-SQLite fails with SQLITE_BUSY; a Hive Metastore serialises
commits with metastore locks, and both Spark and pyiceberg speak to it. pyspark ships
everything a Hive 2.3.9 metastore server needs, so no extra download is required.

Why it is started the way it is (see DESIGN.md sections 3 and 6):

* Iceberg's Hive commits take metastore locks, which need Hive's transaction tables.
  Hive 2.3 only creates them with ``hive.in.test=true``, a mode in which it rejects
  Iceberg's lock requests. So on a fresh Derby database we create them with
  ``TxnDbUtil.prepDb(HiveConf)`` and then serve with ``hive.in.test=false``.
* Hive 2.3.9's ``HiveMetaStore.startMetaStore`` hard-codes a wildcard bind (it calls
  ``HiveAuthUtils.getServerSocket(null, port)``; there is no ``*.bind.host`` property for
  the metastore before Hive 3/4). A catalog service with no authentication must not be
  reachable from the network, so the server is assembled here through py4j exactly as
  ``startMetaStore`` does it (same handler, processor, transport, protocol and
  background threads) except that the server socket is bound to ``host`` (loopback by
  default). This needs only a Java runtime, not a JDK.
* The service runs in a detached process group (a small Python supervisor holding the
  py4j gateway, and its JVM) so that it outlives the command that started it: ``setup``
  starts it and a later ``backfill`` reuses it through the state file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping
from xml.sax.saxutils import escape

from backfill.errors import EnvironmentProblem

LOOPBACK = "127.0.0.1"
STATE_DIR_NAME = ".metastore"
#: Without it the server dies on a missing LMAX disruptor class (DESIGN.md section 3).
LOG4J_SELECTOR = (
    "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.ClassLoaderContextSelector"
)
_JAVA_HELP = (
    "Install a Java 17 runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "macOS: `brew install openjdk@17`) and put `java` on PATH or set JAVA_HOME"
)
#: Environment variables that would point the gateway JVM at another Spark, a running
#: gateway or foreign Hadoop/Hive configuration.
_FOREIGN_ENV = (
    "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "PYSPARK_SUBMIT_ARGS", "SPARK_HOME",
    "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "HIVE_CONF_DIR", "SPARK_CLASSPATH",
)
_LOG_TAIL_LINES = 30


def find_java() -> str:
    """Path of the ``java`` executable: ``$JAVA_HOME/bin/java`` first, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found:
        return found
    where = f" (JAVA_HOME={java_home!r} has no bin/java)" if java_home else ""
    raise EnvironmentProblem(f"Java was not found{where}: {_JAVA_HELP}")


def pyspark_jars_dir() -> Path:
    """pyspark's ``jars`` folder, which holds the Hive 2.3.9 metastore, Derby and DataNucleus."""
    try:
        import pyspark
    except ImportError:  # pragma: no cover - pyspark is a hard dependency
        raise EnvironmentProblem("pyspark is not installed: `pip install pyspark==3.5.7`") from None
    jars = Path(pyspark.__file__).resolve().parent / "jars"
    if not any(jars.glob("hive-metastore-*.jar")):
        raise EnvironmentProblem(
            f"{jars} holds no hive-metastore jar: reinstall pyspark (`pip install "
            "--force-reinstall pyspark==3.5.7`); the embedded catalog needs its Hive jars"
        )
    return jars


def hive_site_properties(state_dir: Path, warehouse_dir: Path) -> dict[str, str]:
    """Metastore settings: Derby under ``state_dir``, tables under ``warehouse_dir``."""
    return {
        "javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={state_dir / 'metastore_db'};create=true"
        ),
        "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
        "hive.metastore.warehouse.dir": warehouse_dir.as_uri(),
        "datanucleus.schema.autoCreateAll": "true",
        "hive.metastore.schema.verification": "false",
        # True would create the txn tables itself but then reject Iceberg's lock requests.
        "hive.in.test": "false",
        # Iceberg evolves schemas itself; let it update the Hive column list freely.
        "hive.metastore.disallow.incompatible.col.type.changes": "false",
    }


def _hive_site_xml(props: Mapping[str, str]) -> str:
    rows = "".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
        for k, v in props.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}</configuration>\n'


_LOG4J2_PROPERTIES = """\
# Written by cluster/metastore.py: warnings and errors only (one INFO line per call otherwise).
status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
# A client that connects and hangs up without a call (a port probe, a pooled client closing)
# is logged here as an ERROR with a stack trace; handler errors are logged by Hive itself.
logger.tpool.name = org.apache.thrift.server.TThreadPoolServer
logger.tpool.level = off
"""


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
        return bool(state) and self._pid_alive(int(state["pid"])) and _port_open(
            state["host"], int(state["port"])
        )

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
            return "cluster.metastore" in cmdline and str(self.state_dir) in cmdline
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
            env["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
        cmd = [sys.executable, "-m", "cluster.metastore", "serve", str(self.state_dir),
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


# ---------------------------------------------------------------------------- server side
# Runs in the detached supervisor: ``python -m cluster.metastore serve STATE WAREHOUSE HOST PORT``.


def serve(state_dir: Path, warehouse_dir: Path, host: str, port: int) -> None:
    """Start a gateway JVM, prepare Derby, then serve thrift on ``host:port`` until killed."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    conf_dir = state_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    props = hive_site_properties(state_dir, warehouse_dir)
    (conf_dir / "hive-site.xml").write_text(_hive_site_xml(props))
    (conf_dir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
    spark_conf = SparkConf(loadDefaults=False)
    spark_conf.set("spark.driver.extraClassPath", str(conf_dir))  # hive-site.xml, log4j2
    spark_conf.set("spark.driver.memory", "512m")
    # Relative paths: cwd is the state dir, and spark-submit splits these options on spaces.
    spark_conf.set("spark.driver.extraJavaOptions",
                   f"{LOG4J_SELECTOR} -Djava.net.preferIPv4Stack=true "
                   "-Dderby.stream.error.file=derby.log")
    gateway = launch_gateway(spark_conf)
    jvm = gateway.jvm
    hconf = jvm.org.apache.hadoop.hive.conf.HiveConf()
    for key, value in props.items():
        hconf.set(key, value)
    _prepare_txn_tables(jvm, hconf, state_dir / "txn-tables.ready")
    server = _build_server(gateway, hconf, host, port)
    _start_lock_reaper(jvm, hconf)
    print(f"embedded metastore: serving thrift on {host}:{port}", flush=True)
    server.serve()  # blocks; the JVM exits when this process dies (stdin EOF) or on SIGTERM


#: How often expired metastore locks are removed (locks expire after ``hive.txn.timeout``,
#: 300 s; Iceberg's Java client heartbeats its locks every 240 s).
LOCK_REAP_SECONDS = 60.0


def _start_lock_reaper(jvm: Any, hconf: Any) -> None:
    """Remove expired locks every minute, as Hive's AcidHouseKeeperService would.

    A client that dies, or loses the service, while it holds a commit lock (a catalog
    restart in the middle of an Iceberg commit) leaves the lock row behind; Hive 2.3 only
    expires such locks from its housekeeping service, which the compactor switch that
    starts it would also start compactions. Without this, every later commit to that
    table waits for the lock forever (found by the chaos test).
    """
    import threading

    store = jvm.org.apache.hadoop.hive.metastore.txn.TxnUtils.getTxnStore(hconf)

    def reap() -> None:
        while True:
            time.sleep(LOCK_REAP_SECONDS)
            try:
                store.performTimeOuts()
            except Exception as exc:  # keep serving; the next round tries again
                print(f"embedded metastore: expiring locks failed: {exc}", flush=True)

    threading.Thread(target=reap, name="lock-reaper", daemon=True).start()


def _prepare_txn_tables(jvm: Any, hconf: Any, marker: Path) -> None:
    """Create Hive's transaction tables once, before DataNucleus creates the rest."""
    if marker.exists():
        return
    from py4j.protocol import Py4JJavaError

    try:
        jvm.org.apache.hadoop.hive.metastore.txn.TxnDbUtil.prepDb(hconf)
    except Py4JJavaError as exc:  # an interrupted earlier run may have created them
        if "already exists" not in str(exc):
            raise
    marker.write_text("TxnDbUtil.prepDb done\n")


def _build_server(gateway: Any, hconf: Any, host: str, port: int) -> Any:
    """``HiveMetaStore.main``/``startMetaStore`` (Hive 2.3.9, plain transport) bound to ``host``."""
    jvm = gateway.jvm
    hms_name = "org.apache.hadoop.hive.metastore.HiveMetaStore"
    hms = jvm.java.lang.Class.forName(hms_name)
    remote = hms.getDeclaredField("isMetaStoreRemote")
    remote.setAccessible(True)
    remote.setBoolean(None, True)

    lock = jvm.java.util.concurrent.locks.ReentrantLock()
    condition = lock.newCondition()
    started = jvm.java.util.concurrent.atomic.AtomicBoolean()
    signal_types = ("java.util.concurrent.locks.Lock", "java.util.concurrent.locks.Condition",
                    "java.util.concurrent.atomic.AtomicBoolean")
    _call_private(gateway, hms, "startMetaStoreThreads",
                  ("org.apache.hadoop.hive.conf.HiveConf", *signal_types),
                  (hconf, lock, condition, started))

    meta = jvm.org.apache.hadoop.hive.metastore
    base = getattr(meta, "HiveMetaStore$HMSHandler")("new db based metaserver", hconf, False)
    handler = meta.HiveMetaStore.newRetryingHMSHandler(base, hconf)
    if hconf.getBoolean("hive.metastore.execute.setugi", True):
        transport = getattr(jvm.org.apache.hadoop.hive.thrift, "TUGIContainingTransport$Factory")()
        processor = meta.TUGIBasedProcessor(handler)
    else:
        transport = jvm.org.apache.thrift.transport.TTransportFactory()
        processor = meta.TSetIpAddressProcessor(handler)
    max_message = hconf.getLong("hive.metastore.server.max.message.size", 100 * 1024 * 1024)
    binary = getattr(jvm.org.apache.thrift.protocol, "TBinaryProtocol$Factory")
    server_socket = jvm.org.apache.thrift.transport.TServerSocket(
        jvm.java.net.InetSocketAddress(host, port))
    if hconf.getBoolean("hive.metastore.server.tcp.keepalive", True):
        server_socket = meta.TServerSocketKeepAlive(server_socket)
    args = (
        getattr(jvm.org.apache.thrift.server, "TThreadPoolServer$Args")(server_socket)
        .processor(processor)
        .transportFactory(transport)
        .protocolFactory(binary())
        .inputProtocolFactory(binary(True, True, max_message, max_message))
        .minWorkerThreads(hconf.getInt("hive.metastore.server.min.threads", 200))
        .maxWorkerThreads(hconf.getInt("hive.metastore.server.max.threads", 1000))
    )
    server = jvm.org.apache.thrift.server.TThreadPoolServer(args)
    # HiveMetaStore$3 closes a connection's RawStore when its client disconnects.
    events = jvm.java.lang.Class.forName(hms_name + "$3").getDeclaredConstructor(
        gateway.new_array(jvm.java.lang.Class, 0))
    events.setAccessible(True)
    server.setServerEventHandler(events.newInstance(gateway.new_array(jvm.java.lang.Object, 0)))
    _call_private(gateway, hms, "signalOtherThreadsToStart",
                  ("org.apache.thrift.server.TServer", *signal_types),
                  (server, lock, condition, started))
    return server


def _call_private(gateway: Any, cls: Any, name: str, types: tuple[str, ...],
                  args: tuple[Any, ...]) -> Any:
    """Invoke a private static method by reflection (py4j cannot call it directly)."""
    jvm = gateway.jvm
    jtypes = gateway.new_array(jvm.java.lang.Class, len(types))
    for i, type_name in enumerate(types):
        jtypes[i] = jvm.java.lang.Class.forName(type_name)
    method = cls.getDeclaredMethod(name, jtypes)
    method.setAccessible(True)
    jargs = gateway.new_array(jvm.java.lang.Object, len(args))
    for i, arg in enumerate(args):
        jargs[i] = arg
    return method.invoke(None, jargs)


def _main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "serve":
        print("usage: python -m cluster.metastore serve STATE_DIR WAREHOUSE HOST PORT",
              file=sys.stderr)
        return 2
    serve(Path(argv[1]), Path(argv[2]), argv[3], int(argv[4]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
