"""Server side of the embedded Hive metastore: what runs in the detached supervisor process.

``cluster.metastore.EmbeddedMetastore`` spawns ``python -m cluster.metastore_server serve
STATE_DIR WAREHOUSE HOST PORT``; this module then starts a py4j gateway JVM from pyspark's
own jars, prepares the Derby database and serves thrift until it is killed. It imports
nothing of the supervisor (the client side imports this module's name to spawn it).

Why the server is assembled the way it is (see DESIGN.md sections 3 and 6):

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
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

#: Without it the server dies on a missing LMAX disruptor class (DESIGN.md section 3).
LOG4J_SELECTOR = (
    "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.ClassLoaderContextSelector"
)
#: How often expired metastore locks are removed (locks expire after ``hive.txn.timeout``,
#: 300 s; Iceberg's Java client heartbeats its locks every 240 s).
LOCK_REAP_SECONDS = 60.0
#: Not ``__name__``: run with ``-m`` this module is ``__main__``.
USAGE = "usage: python -m cluster.metastore_server serve STATE_DIR WAREHOUSE HOST PORT"

LOG4J2_PROPERTIES = """\
# Written by cluster/metastore_server.py: warnings and errors only (one INFO line per call otherwise).
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

_HMS = "org.apache.hadoop.hive.metastore.HiveMetaStore"
#: Parameter types (after the first) of HiveMetaStore's private start-up signalling methods.
_SIGNAL_TYPES = ("java.util.concurrent.locks.Lock", "java.util.concurrent.locks.Condition",
                 "java.util.concurrent.atomic.AtomicBoolean")


# ---------------------------------------------------------------------------- hive-site


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


def hive_site_xml(props: Mapping[str, str]) -> str:
    """``props`` as a Hadoop ``hive-site.xml`` document."""
    rows = "".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
        for k, v in props.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}</configuration>\n'


def write_conf(conf_dir: Path, props: Mapping[str, str]) -> None:
    """Write ``hive-site.xml`` and ``log4j2.properties`` (both read from the class path)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "hive-site.xml").write_text(hive_site_xml(props))
    (conf_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)


# ---------------------------------------------------------------------------- serving


def serve(state_dir: Path, warehouse_dir: Path, host: str, port: int) -> None:
    """Start a gateway JVM, prepare Derby, then serve thrift on ``host:port`` until killed."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    conf_dir = state_dir / "conf"
    props = hive_site_properties(state_dir, warehouse_dir)
    write_conf(conf_dir, props)
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


def _start_lock_reaper(jvm: Any, hconf: Any) -> None:
    """Remove expired locks every minute, as Hive's AcidHouseKeeperService would.

    A client that dies, or loses the service, while it holds a commit lock (a catalog
    restart in the middle of an Iceberg commit) leaves the lock row behind; Hive 2.3 only
    expires such locks from its housekeeping service, which the compactor switch that
    starts it would also start compactions. Without this, every later commit to that
    table waits for the lock forever (found by the chaos test).
    """
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
    hms = jvm.java.lang.Class.forName(_HMS)
    remote = hms.getDeclaredField("isMetaStoreRemote")
    remote.setAccessible(True)
    remote.setBoolean(None, True)

    lock = jvm.java.util.concurrent.locks.ReentrantLock()
    signals = (lock, lock.newCondition(), jvm.java.util.concurrent.atomic.AtomicBoolean())
    _call_private(gateway, hms, "startMetaStoreThreads",
                  ("org.apache.hadoop.hive.conf.HiveConf", *_SIGNAL_TYPES), (hconf, *signals))
    server = _thread_pool_server(jvm, hconf, host, port)
    # HiveMetaStore$3 closes a connection's RawStore when its client disconnects.
    events = jvm.java.lang.Class.forName(_HMS + "$3").getDeclaredConstructor(
        gateway.new_array(jvm.java.lang.Class, 0))
    events.setAccessible(True)
    server.setServerEventHandler(events.newInstance(gateway.new_array(jvm.java.lang.Object, 0)))
    _call_private(gateway, hms, "signalOtherThreadsToStart",
                  ("org.apache.thrift.server.TServer", *_SIGNAL_TYPES), (server, *signals))
    return server


def _thread_pool_server(jvm: Any, hconf: Any, host: str, port: int) -> Any:
    """The ``TThreadPoolServer`` of ``startMetaStore``, its socket bound to ``host:port``."""
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
    return jvm.org.apache.thrift.server.TThreadPoolServer(args)


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
        print(USAGE, file=sys.stderr)
        return 2
    serve(Path(argv[1]), Path(argv[2]), argv[3], int(argv[4]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
