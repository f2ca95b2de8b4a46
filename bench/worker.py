"""The benchmark's Ray actor: one RayDP session reused for every strategy.

It is a :class:`actors.partition_actor.PartitionWorker`, so the ``engine`` strategies run
the project's real partition code path; the other strategies run their SQL on the same
session. Only the backfill work is timed. A sampler thread records the peak RSS of this
actor process, its children (the Spark driver JVM) and the RayDP executor processes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors.partition_actor import PartitionWorker
from backfill.config import Config
from backfill.core.identifiers import quote_table
from backfill.core.plan import MergeBatch, PartitionTask, merge_batches
from backfill.ops.compact import rewrite_sql

SUMMARY_KEYS = ("added-data-files", "deleted-data-files", "added-files-size", "removed-files-size",
                "added-delete-files", "added-records", "deleted-records", "added-position-deletes",
                "added-dvs")


class BenchWorker(PartitionWorker):
    def __init__(self, cfg: Config, catalog_spark_conf: Mapping[str, str], name: str) -> None:
        super().__init__(cfg, catalog_spark_conf, name)
        self._base_cfg = cfg
        self._peak = 0
        self._pids: set[int] = set()
        self._sampling = threading.Event()
        threading.Thread(target=self._sampler, daemon=True).start()

    # ------------------------------------------------------------------ memory

    def _executor_pids(self) -> set[int]:
        try:
            from ray.util.state import list_actors

            return {a.pid for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                    if a.pid and "Executor" in (a.class_name or "")}
        except Exception:  # state API unavailable: actor tree only
            return set()

    def _sampler(self) -> None:

        import psutil

        me = psutil.Process(os.getpid())
        while True:
            if self._sampling.is_set():
                procs = [me] + me.children(recursive=True)
                for pid in list(self._pids):
                    try:
                        procs.append(psutil.Process(pid))
                    except psutil.Error:
                        pass
                rss = 0
                for p in {p.pid: p for p in procs}.values():
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                self._peak = max(self._peak, rss)
            time.sleep(0.1)

    # ------------------------------------------------------------------ spark metrics

    def _input_bytes(self) -> int | None:
        """Cumulative Spark input bytes of all executors (inputMetrics.bytesRead)."""
        try:
            sc = self.spark.sparkContext._jsc.sc()
            try:
                sc.listenerBus().waitUntilEmpty()
            except Exception:
                time.sleep(1.0)
            seq = sc.statusStore().executorList(False)
            return int(sum(seq.apply(i).totalInputBytes() for i in range(seq.size())))
        except Exception:
            return None

    # ------------------------------------------------------------------ tables

    def set_cfg(self, cfg: Config) -> None:
        """Point the worker at a data set's tables (staging included)."""
        self._base_cfg = cfg
        self.cfg = cfg
        self._target = quote_table(cfg.table_parts("target"))
        self._staging = quote_table(cfg.table_parts("staging"))

    def use_target(self, table: str) -> None:
        self.cfg = dataclasses.replace(self._base_cfg, tables=dataclasses.replace(
            self._base_cfg.tables, target_table=table))
        self._target = quote_table(self.cfg.table_parts("target"))

    def copy_table(self, metadata_file: str, table: str, properties: Mapping[str, str]) -> None:
        """Register ``table`` on the base table's metadata (shares its immutable data files)."""
        catalog = self.cfg.catalog.name
        ns_name = table.split(".")
        self.spark.sql(f"CALL `{catalog}`.system.register_table(table => '{table}', "
                       f"metadata_file => '{metadata_file}')").collect()
        if properties:
            props = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
            self.spark.sql(f"ALTER TABLE `{catalog}`.`{ns_name[0]}`.`{ns_name[1]}` "
                           f"SET TBLPROPERTIES ({props})").collect()

    def sort_by_account(self, table: str) -> None:
        """Rewrite every file of ``table`` sorted by account; later writes sort locally too."""
        q = self._q(table)
        self.spark.sql(f"ALTER TABLE {q} WRITE LOCALLY ORDERED BY `{self.cfg.tables.account_column}`")
        self.spark.sql(f"CALL `{self.cfg.catalog.name}`.system.rewrite_data_files(table => '{table}', "
                       "strategy => 'sort', options => map('rewrite-all', 'true'))").collect()

    def table_state(self, table: str) -> dict[str, Any]:
        q = self._q(table)
        self.spark.sql(f"REFRESH TABLE {q}")
        data = self.spark.sql(f"SELECT count(*), coalesce(sum(file_size_in_bytes), 0), "
                              f"coalesce(sum(record_count), 0) FROM {q}.`data_files`").collect()[0]
        dels = self.spark.sql(f"SELECT count(*), coalesce(sum(file_size_in_bytes), 0) "
                              f"FROM {q}.`delete_files`").collect()[0]
        snaps = [int(r[0]) for r in self.spark.sql(f"SELECT snapshot_id FROM {q}.`snapshots`").collect()]
        return {"data_files": int(data[0]), "data_bytes": int(data[1]), "records": int(data[2]),
                "delete_files": int(dels[0]), "delete_bytes": int(dels[1]), "snapshots": snaps}

    def _q(self, table: str) -> str:
        catalog = self.cfg.catalog.name
        ns, name = table.split(".")
        return f"`{catalog}`.`{ns}`.`{name}`"

    def commit_totals(self, table: str, before: Sequence[int]) -> dict[str, int]:
        q = self._q(table)
        self.spark.sql(f"REFRESH TABLE {q}")
        rows = self.spark.sql(f"SELECT snapshot_id, summary FROM {q}.`snapshots`").collect()
        totals = dict.fromkeys(SUMMARY_KEYS, 0)
        totals["commits"] = 0
        for sid, summary in rows:
            if int(sid) in set(before):
                continue
            totals["commits"] += 1
            for k in SUMMARY_KEYS:
                v = (summary or {}).get(k)
                if v is not None and str(v).isdigit():
                    totals[k] += int(v)
        return totals

    # ------------------------------------------------------------------ runs

    def run(self, runner: str, table: str, tasks: Sequence[PartitionTask], backfill_id: str,
            staging_snapshot_id: int | None, parallel: int = 1,
            statements: Mapping[str, Sequence[str]] | None = None, per_merge: int = 1,
            session_conf: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Apply ``tasks`` to ``table`` the ``runner`` way; returns timing and outcomes."""
        self.use_target(table)
        saved = {k: self.spark.conf.get(k, None) for k in (session_conf or {})}
        for k, v in (session_conf or {}).items():
            self.spark.conf.set(k, v)
        self._pids = self._executor_pids()
        self._peak = 0
        read0 = self._input_bytes()
        self._sampling.set()
        t0 = time.monotonic()
        outcomes: list[dict[str, Any]] = []
        try:
            if runner == "engine":
                # the driver's batching, then each batch the partition actor's way
                def one(batch: MergeBatch) -> list[dict[str, Any]]:
                    return [{"partition": o.partition, "status": o.status, "rows": o.rows_updated,
                             "error": o.error}
                            for o in self.apply(batch, [backfill_id], f"bench-{table}", staging_snapshot_id, 1,
                                                staging_is_exact=True)]
                batches = merge_batches(list(tasks), per_merge, parallel)
                if parallel > 1:
                    with ThreadPoolExecutor(parallel) as pool:
                        outcomes = [o for got in pool.map(one, batches) for o in got]
                else:
                    outcomes = [o for b in batches for o in one(b)]
            else:
                for task in tasks:
                    for sql in (statements or {}).get(task.partition, ()):
                        self.spark.sql(sql).collect()
                    outcomes.append({"partition": task.partition, "status": "committed"})
        finally:
            wall = time.monotonic() - t0
            self._sampling.clear()
            for k, v in saved.items():
                if v is None:
                    self.spark.conf.unset(k)
                else:
                    self.spark.conf.set(k, v)
        read1 = self._input_bytes()
        return {"wall_seconds": wall, "outcomes": outcomes, "peak_rss_bytes": self._peak,
                "spark_input_bytes": (read1 - read0) if read0 is not None and read1 is not None else None,
                "sampled_pids": len(self._pids) + 1}

    def compact(self, table: str, partitions: Sequence[str]) -> dict[str, Any]:
        """``iceberg-backfill compact``'s procedure call on ``partitions`` of ``table``, timed."""

        self.use_target(table)
        t0 = time.monotonic()
        rewritten = added = nbytes = 0
        for p in partitions:
            row = self.spark.sql(rewrite_sql(self.cfg, p)).collect()[0]
            rewritten, added, nbytes = rewritten + int(row[0]), added + int(row[1]), nbytes + int(row[2])
        return {"seconds": time.monotonic() - t0, "rewritten_data_files": rewritten,
                "added_data_files": added, "rewritten_bytes": nbytes}

    # ------------------------------------------------------------------ verification

    def rows_of(self, table: str, accounts: Sequence[int]) -> dict[tuple[int, str], dict[str, Any]]:
        """Rows of ``accounts`` as {(acct, month): {array column: list | None}}."""
        t = self.cfg.tables
        q = self._q(table)
        self.spark.sql(f"REFRESH TABLE {q}")
        cols = [hc.array_column for hc in t.history_columns]
        listed = ", ".join(str(int(a)) for a in accounts)
        out: dict[tuple[int, str], dict[str, Any]] = {}
        for r in self.spark.sql(f"SELECT `{t.account_column}`, `{t.month_column}`, "
                                + ", ".join(f"`{c}`" for c in cols)
                                + f" FROM {q} WHERE `{t.account_column}` IN ({listed})").collect():
            key = (int(r[0]), str(r[1]))
            if key in out:
                raise AssertionError(f"duplicate row {key} in {table}")
            out[key] = {c: (None if r[i + 2] is None else list(r[i + 2])) for i, c in enumerate(cols)}
        return out

    def unaffected_differences(self, table: str, base: str, accounts: Sequence[int]) -> dict[str, int]:
        """Rows outside ``accounts`` that differ (any cell) between ``table`` and ``base``."""
        t = self.cfg.tables
        a, m = f"`{t.account_column}`", f"`{t.month_column}`"
        listed = ", ".join(str(int(x)) for x in accounts)
        same = " AND ".join(f"c.`{hc.array_column}` <=> b.`{hc.array_column}`" for hc in t.history_columns)
        q, qb = self._q(table), self._q(base)
        self.spark.sql(f"REFRESH TABLE {q}")
        diff = self.spark.sql(
            f"SELECT count(*) FROM (SELECT * FROM {q} WHERE {a} NOT IN ({listed})) c "
            f"FULL OUTER JOIN (SELECT * FROM {qb} WHERE {a} NOT IN ({listed})) b "
            f"ON c.{a} = b.{a} AND c.{m} = b.{m} "
            f"WHERE c.{a} IS NULL OR b.{a} IS NULL OR NOT ({same})").collect()[0][0]
        n_c = self.spark.sql(f"SELECT count(*) FROM {q}").collect()[0][0]
        n_b = self.spark.sql(f"SELECT count(*) FROM {qb}").collect()[0][0]
        return {"differing_rows": int(diff), "rows": int(n_c), "base_rows": int(n_b)}
