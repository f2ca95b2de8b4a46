"""Every command line and Python snippet of the original description, run on the demo stack.

Users copy the seed README's commands and snippets (docs/seed-readme.md, a verbatim copy
of the seed, checked against the original when ``shared/`` sits beside the clone). This
test extracts them from that file, not from a copy pasted here, so a later change to the
tool cannot break one unnoticed. It runs them in the order a user would, on the session's
embedded catalog and Ray instance, and prints each one with its outcome.

What is added to the seed's text, and why (nothing else is changed):

- every command gets ``--config seed.toml``: the session's warehouse, and the Spark catalog
  named ``catalog``, because the seed's table ``catalog.db.accounts_history`` names catalog
  ``catalog`` (with the tool's default name ``demo`` the command exits 2 naming both names;
  it never writes to another table than the one named).
- ``setup --sample-data`` gets a small size and sample entries under the seed's id and
  month (``--accounts 20 --months 8 --staged-accounts 4 --first-month 2023-12
  --backfill-id bf-2024-001``), so the seed's later lines act on real rows.
- the seed's resume line follows a failure, as in the seed ("If a job fails"): a late entry
  of bf-2024-001 for 2023-12 is staged, and a run of it is stopped with SIGTERM (exit 7)
  after it committed 2024-04 (oldest first, one partition per MERGE), so that resuming from
  2024-05 skips only partitions that are done.
- ``--method sql`` in the seed's backfill line runs after one more entry is staged (the
  merge run before it applied everything pending), verified on its branch and reported.
- Python: the seed's module imports become ``backfill.seed.*`` imports; the Spark set-up
  snippet gets its missing ``from pyspark.sql import SparkSession``. The ids the advanced
  snippets name (bf-001, bf-002, bf-003) are staged first with the seed's own INSERT form,
  and the verify snippet's accounts 12345 and 67890 (not in the demo table) become two
  accounts bf-001 really changed.
- The INSERT block (SQL in a python fence) runs as SQL in ``create_spark_session()``'s
  session with its placeholder ``-- ... values for all 20 columns`` filled. The
  Configuration block is an edit instruction for ``config.py``: it runs, and each name it
  assigns must exist in ``backfill.seed.config``. The CREATE TABLE block is not run (setup
  creates the table; ``CLUSTERED BY`` is Hive DDL, the tool partitions by bucket(acct)).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import backfill.seed.config as seed_config
from backfill.api import CONFIG_ENV, create_spark_session
from backfill.config import load_config
from backfill.core.commit_tags import tagged_ids, tagged_partitions
from backfill.core.months import month_range
from backfill.iceberg.tables import identifier
from tests.integration.helpers import pyiceberg_catalog, read_rows

ROOT = Path(__file__).resolve().parents[2]
SEED_COPY = ROOT / "docs" / "seed-readme.md"
SEED_ORIGINAL = ROOT.parent / "shared" / "seed" / "000_151cafb97bf27c18.txt"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
#: seed module -> the module of this project that holds its names
SEED_MODULES = {m: f"backfill.seed.{m}" for m in
                ("config", "run_backfill", "backfill_processor", "backfill_batch", "backfill_sql", "utils")}
SETUP_SIZE = ["--accounts", "20", "--months", "8", "--staged-accounts", "4", "--first-month", "2023-12",
              "--backfill-id", "bf-2024-001"]
INSERT_PLACEHOLDER = "-- ... values for all 20 columns"
#: the sample table's partitions (--first-month 2023-12, --months 8)
PARTITIONS = month_range("2023-12", "2024-07")


# ------------------------------------------------------------------ reading the seed


def seed_text() -> str:
    return SEED_COPY.read_text()


def blocks(text: str, lang: str) -> list[str]:
    """The bodies of the fenced blocks of ``lang``, in order."""
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def command_lines(block: str) -> list[str]:
    """The command lines of a bash block, backslash continuations joined."""
    return [" ".join(line.split()) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def seed_commands(text: str) -> list[str]:
    return [line for b in blocks(text, "bash") for line in command_lines(b)]


def rewrite_imports(code: str) -> str:
    """The only change a seed snippet gets: ``from config import X`` -> ``from backfill.seed.config import X``."""
    def repl(m: re.Match[str]) -> str:
        return f"from {SEED_MODULES.get(m.group(1), m.group(1))} import"

    return re.sub(r"^from (\w+) import", repl, code, flags=re.M)


def python_block(text: str, marker: str) -> str:
    found = [b for b in blocks(text, "python") if marker in b]
    assert len(found) == 1, f"one python block of the seed holds {marker!r}"
    return found[0]


def seed_insert(block: str, backfill_id: str, acct: int, month: str) -> str:
    """The seed's INSERT with its placeholder filled (18 more values) and its id, account and month set."""
    values = ", ".join(f"{n}.00" for n in range(3, 21)) + ","
    sql = block.replace(INSERT_PLACEHOLDER, values)
    sql = sql.replace("'bf-2024-001'", f"'{backfill_id}'", 1).replace("12345,", f"{acct},", 1)
    return sql.replace("'2023-12'", f"'{month}'", 1).strip().rstrip(";")


# ------------------------------------------------------------------ running


class SeedRun:
    """Runs seed lines as subprocesses and snippets in one namespace, printing each outcome."""

    def __init__(self, toml: Path, ray_address: str, logs: Path) -> None:
        self.toml, self.logs = toml, logs
        self.env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT)}
        self.ns: dict[str, Any] = {}
        self.n = 0

    def argv(self, line: str, extra: list[str]) -> list[str]:
        words = shlex.split(line)
        assert words[:2] == ["python", "run_backfill.py"], line
        return [sys.executable, "run_backfill.py", *words[2:], *extra, "--config", str(self.toml)]

    def start(self, line: str, extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        self.n += 1
        log = self.logs / f"{self.n:02d}.log"
        argv = self.argv(line, extra or [])
        print(f"\n$ {line}" + (f"   [+ {' '.join(extra)}]" if extra else "") + "   [+ --config seed.toml]")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        return proc, log

    def command(self, line: str, extra: list[str] | None = None, expect: int = 0) -> str:
        proc, log = self.start(line, extra)
        rc = proc.wait(timeout=900)
        out = log.read_text()
        print(f"  -> exit {rc}" + ("" if rc == expect else f" (expected {expect})\n{out[-4000:]}"))
        assert rc == expect
        return out

    def snippet(self, title: str, code: str) -> None:
        print(f"\n>>> python snippet: {title}")
        exec(compile(code, f"<seed snippet: {title}>", "exec"), self.ns)  # the seed's own code, as a user runs it
        print("  -> ok (no exception)")

    def sql(self, title: str, statement: str) -> list[Any]:
        print(f"\n>>> sql: {title}")
        rows = self.ns["spark"].sql(statement).collect()
        print(f"  -> ok, {len(rows)} row(s)")
        return rows


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def _commits(catalog: Any, cfg: Any, backfill_id: str, partition: str) -> set[int]:
    """Snapshot ids of the target's commits of ``backfill_id`` that wrote ``partition``."""
    table = catalog.load_table(identifier(cfg, "target"))
    found = set()
    for snap in table.metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if backfill_id in tagged_ids(props) and partition in tagged_partitions(props):
            found.add(snap.snapshot_id)
    return found


def _write_toml(path: Path, warehouse: Path) -> Path:
    path.write_text(f"""
[tables]
buckets = 4
[catalog]
name = "catalog"
type = "embedded"
warehouse = "{warehouse}"
[spark]
executor_memory = "768m"
conf = {{ "spark.sql.shuffle.partitions" = "4" }}
[run]
partitions_per_actor = 4
retry_backoff_seconds = 0.5
""")
    return path


def _staged(catalog: Any, cfg: Any, backfill_id: str) -> list[dict[str, Any]]:
    return [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == backfill_id]


# ------------------------------------------------------------------ the test


@pytest.fixture()
def seed_stack(ray_instance, catalog_service, tmp_path, monkeypatch):
    """The seed's config on the session catalog, $ICEBERG_BACKFILL_CONFIG set, the local session stopped after."""
    toml = _write_toml(tmp_path / "seed.toml", catalog_service.warehouse_dir)
    monkeypatch.setenv(CONFIG_ENV, str(toml))
    logs = tmp_path / "logs"
    logs.mkdir()
    run = SeedRun(toml, ray_instance.get_runtime_context().gcs_address, logs)
    yield run, load_config(toml).validated(), pyiceberg_catalog(load_config(toml))
    spark = run.ns.get("spark")
    if spark is not None:
        spark.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_every_seed_command_and_snippet_runs(seed_stack, tmp_path):
    run, cfg, catalog = seed_stack
    text = seed_text()
    if SEED_ORIGINAL.exists():
        assert text == SEED_ORIGINAL.read_text(), "docs/seed-readme.md must be a verbatim copy of the seed"
    commands = seed_commands(text)
    _quick_start(run, cfg, catalog, text, commands)
    _resume_after_failure(run, cfg, catalog, text, commands)
    _monitoring(run, text)
    _advanced(run, cfg, catalog, text)
    print("\nevery command line and snippet of the seed ran")


def _quick_start(run: SeedRun, cfg: Any, catalog: Any, text: str, commands: list[str]) -> None:
    """Installation and Quick Start 1-5, the two --method fragments and --log-level DEBUG."""
    assert commands[0] == "pip install pyspark"
    print(f"\n$ {commands[0]}\n  -> not run: pyspark is a pinned dependency of this project, already installed")
    setup, estimate, backfill, status, resume, merge, sql = commands[1:]
    assert (merge, sql) == ("--method merge", "--method sql")
    run.command(setup, SETUP_SIZE)
    run.ns["spark"] = create_spark_session()
    builder = python_block(text, "SparkSession.builder")
    run.snippet("Spark with Iceberg extensions (+ from pyspark.sql import SparkSession)",
                "from pyspark.sql import SparkSession\n" + builder)
    assert run.ns["spark"] is create_spark_session(), "getOrCreate returned the tool's session"
    insert = python_block(text, "INSERT INTO backfill_staging")
    run.sql("the seed's INSERT INTO backfill_staging (placeholders filled)",
            seed_insert(insert, "bf-2024-001", 12345, "2023-12"))
    run.command(estimate)
    out = run.command(backfill)
    # --verify checks the run on its branch, before it is published to main in one step
    assert "verify bf-2024-001:" in out and "OK" in out and "published to main in one step" in out
    assert out.index("verify bf-2024-001:") < out.index("published: main now holds the whole run")
    assert "rows updated" in out  # the report of the run
    print("\n".join("  | " + line for line in out.splitlines()
                    if line.startswith(("verif", "published", "backfill id", "runs ", "partitions ",
                                        "rows updated"))))
    print(f"\n$ {merge}\n  -> the option of the backfill line above (run with it, exit 0)")
    used = {r["acct"] for r in _staged(catalog, cfg, "bf-2024-001") if r["backfill_month"] == "2023-12"}
    extra = next(a for a in _accounts(run) if a not in used)
    run.sql(f"another entry of bf-2024-001 for 2023-12 (acct {extra}), for the --method sql line",
            seed_insert(insert, "bf-2024-001", extra, "2023-12"))
    out = run.command(backfill.replace("--method merge", "--method sql"))
    # the SQL method verifies on the run's branch too, publishes in one step, and reports
    assert "verify bf-2024-001:" in out and "OK" in out and "rows updated" in out
    assert out.index("verify bf-2024-001:") < out.index("published: main now holds the whole run")
    print("\n".join("  | " + line for line in out.splitlines()
                    if line.startswith(("[statement", "verif", "published", "rows updated"))))
    run.command(status)
    debug = re.search(r"`(--log-level DEBUG)`", text)
    assert debug, "the seed names --log-level DEBUG"
    run.command(f"{status} {debug.group(1)}")


def _resume_after_failure(run: SeedRun, cfg: Any, catalog: Any, text: str, commands: list[str]) -> None:
    """The seed's resume line after a run stopped part-way (SIGTERM, exit 7)."""
    backfill, resume = commands[3], commands[5]
    used = {r["acct"] for r in _staged(catalog, cfg, "bf-2024-001") if r["backfill_month"] == "2023-12"}
    late = next(a for a in _accounts(run) if a not in used)
    run.sql(f"a late entry of bf-2024-001 for 2023-12 (acct {late}, the seed's INSERT form)",
            seed_insert(python_block(text, "INSERT INTO backfill_staging"), "bf-2024-001", late, "2023-12"))
    plain = backfill.replace(" --report --verify", "").replace(" --max-parallel 4", "")
    earlier = {p: _commits(catalog, cfg, "bf-2024-001", p) for p in PARTITIONS}  # the first run's
    proc, log = run.start(plain, ["--order", "oldest", "--max-parallel", "1", "--partitions-per-merge", "1"])
    # --resume-from 2024-05 skips the partitions before it: stop once this run committed 2024-04
    _wait_for(lambda: _commits(catalog, cfg, "bf-2024-001", "2024-04") > earlier["2024-04"]
              or proc.poll() is not None, 600, "this run's commit of 2024-04")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=600)
    print(f"  -> failure simulated: SIGTERM after 2024-04 committed, exit {rc}")
    assert rc == 7, log.read_text()[-4000:]
    run.command(resume)
    late_row = [r for r in _staged(catalog, cfg, "bf-2024-001") if r["acct"] == late]
    assert [r["status"] for r in late_row] == ["applied"]
    missed = [p for p in PARTITIONS if not _commits(catalog, cfg, "bf-2024-001", p) - earlier[p]]
    assert not missed, f"the late entry never reached {missed}"
    print("  -> the late entry reached every partition 2023-12..2024-07 (stopped run + resume)")


def _accounts(run: SeedRun) -> list[int]:
    rows = run.ns["spark"].sql("SELECT DISTINCT acct FROM accounts_history WHERE month_partition = '2023-12' "
                               "ORDER BY acct").collect()
    return [r.acct for r in rows]


def _monitoring(run: SeedRun, text: str) -> None:
    """The seed's SQL blocks: the audit trail and the cell check run; its CREATE TABLE does not."""
    create, audit, check = blocks(text, "sql")
    assert create.lstrip().startswith("CREATE TABLE accounts_history")
    print("\n>>> sql: CREATE TABLE accounts_history\n  -> not run: `setup` creates the table "
          "(CLUSTERED BY is Hive DDL; the tool partitions by month and bucket(64, acct))")
    assert run.sql("View Audit Trail", audit.strip().rstrip(";"))
    run.sql("Verify Backfill", check.strip().rstrip(";"))
    configuration = python_block(text, "HISTORY_COLUMNS = [")
    ns: dict[str, Any] = {}
    exec("from backfill.seed.config import HistoryColumn\n" + configuration, ns)
    names = re.findall(r"^(\w+) =", configuration, flags=re.M)
    missing = [n for n in names if not hasattr(seed_config, n)]
    assert not missing, f"backfill.seed.config lacks {missing}"
    assert ns["HISTORY_COLUMNS"] == seed_config.HISTORY_COLUMNS[:2]
    print(f"\n>>> python: Configuration (an edit instruction for config.py)\n  -> ran; backfill.seed.config "
          f"has {', '.join(names)} (the tool reads these settings from its TOML file)")


def _advanced(run: SeedRun, cfg: Any, catalog: Any, text: str) -> None:
    """Generate Report, AQE, Programmatic Usage, Multiple Backfills, SQL script, verify, clean-up."""
    run.snippet("Generate Report", rewrite_imports(python_block(text, "generate_backfill_report")))
    run.snippet("AQE settings", python_block(text, "spark.conf.set"))
    accts = _accounts(run)
    insert = python_block(text, "INSERT INTO backfill_staging")
    first = accts[:2]
    for bid, month, acct in [("bf-001", "2023-12", first[0]), ("bf-001", "2023-12", first[1]),
                             ("bf-002", "2023-11", accts[2]), ("bf-002", "2023-09", accts[3]),
                             ("bf-003", "2023-10", accts[4])]:
        run.sql(f"stage {bid} {month} acct {acct} (the seed's INSERT form)", seed_insert(insert, bid, acct, month))
    run.snippet("Programmatic Usage", rewrite_imports(python_block(text, "orchestrator.run_backfill")))
    run.snippet("Multiple Backfills", rewrite_imports(python_block(text, "run_parallel_backfills")))
    status = {(r["backfill_id"], r["backfill_month"]): r["status"] for bid in ("bf-001", "bf-002", "bf-003")
              for r in _staged(catalog, cfg, bid)}
    assert status == {("bf-001", "2023-12"): "applied", ("bf-002", "2023-11"): "applied",
                      ("bf-003", "2023-10"): "applied", ("bf-002", "2023-09"): "pending"}, status
    print("  -> bf-002's 2023-09 entry, outside its backfill_month, is still pending")
    for acct in accts[5:7]:  # a new delivery of bf-001, so that its script has work to show
        run.sql(f"stage bf-001 2023-12 acct {acct}", seed_insert(insert, "bf-001", acct, "2023-12"))
    os.chdir(run.logs)  # the snippet writes backfill_2023_12.sql to the working directory
    try:
        run.snippet("Generate SQL Script", rewrite_imports(python_block(text, "generate_sql_script(")))
    finally:
        os.chdir(ROOT)
    assert "MERGE INTO `catalog`.`db`.`accounts_history`" in (run.logs / "backfill_2023_12.sql").read_text()
    verify = rewrite_imports(python_block(text, "verify_result.show()"))
    run.snippet(f"Data Validation (sample accounts 12345, 67890 -> {first[0]}, {first[1]})",
                verify.replace("[12345, 67890]", f"[{first[0]}, {first[1]}]"))
    assert run.ns["verify_result"].ok and run.ns["verify_result"].rows_checked > 0
    run.snippet("Clean Old Audits", rewrite_imports(python_block(text, "cleanup_old_audits")))
