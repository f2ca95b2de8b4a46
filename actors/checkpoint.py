"""Checkpoint store: which partitions of a backfill run are pending, running, committed or failed.

Why it exists: ``ray job stop`` SIGKILLs the driver 3 s after SIGTERM and a whole
cluster can go away, so "what is already done" must be durable *before* the next
partition starts. A rerun of the same backfill ids then skips partitions whose exact
work (same partition, same entries digest) is committed, and reports the rest.

Keys: one record set per *run key*, ``run_key(backfill_ids, table_uuid, table)`` = the
sorted, distinct ids joined by ',', then '@' and the target table's Iceberg UUID, then '@'
and its name. The same backfill id may be applied to two tables of one warehouse, to a
table dropped and created again under the same name, or to a copy registered from another
table's metadata (same UUID, other name): a commit recorded for one must never count as
done for another. Inside a key, one :class:`PartitionCheckpoint` per target partition.

Three implementations of one small interface (:class:`CheckpointStore`):

* :class:`InMemoryCheckpointStore` - unit tests and dry runs.
* :class:`FileCheckpointStore` - one JSON file per key, written atomically (temp file,
  fsync, ``os.replace``, fsync of the directory) so a crash leaves either the old or the
  new file, never a torn one. Default directory ``<warehouse>/.backfill-checkpoints``.
* :class:`RayCheckpointStore` - client of a named, *detached* Ray actor in a fixed
  namespace that keeps the state in memory and writes every change through to a
  :class:`FileCheckpointStore` before acknowledging it. The actor outlives the driver
  (SIGKILL, ``ray job stop``); the files outlive the cluster (a new actor reloads them).

The Iceberg snapshot summaries remain the source of truth for what a table contains; the
checkpoint is the run's own ledger (fast resume, status of a run still going on, errors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from backfill.core.locations import is_local, local_path
from backfill.core.names import CHECKPOINT_ACTOR_NAME, CHECKPOINT_DIRNAME, RAY_NAMESPACE
from backfill.core.retry import RetryPolicy
from backfill.core.states import CheckpointState
from backfill.iceberg.storage import Folder, open_folder

_FORMAT_VERSION = 1
_MAX_ERROR_CHARS = 4000


def run_key(backfill_ids: Iterable[str], table_uuid: object = None, table: str | None = None) -> str:
    """The checkpoint key of a run: sorted distinct backfill ids joined by ',', '@' the
    target's table UUID, '@' its name (both omitted only by stores used without a table,
    in unit tests)."""
    ids = ",".join(sorted(set(backfill_ids)))
    key = f"{ids}@{table_uuid}" if table_uuid is not None else ids
    return f"{key}@{table}" if table is not None else key


def expired_commits(records: Mapping[str, PartitionCheckpoint], digests: Mapping[str, str],
                    history: Mapping[int, datetime]) -> dict[str, int]:
    """Partitions whose recorded commit (same digest) the table's snapshot history no longer
    holds *because it expired*: partition -> snapshot id.

    A commit missing from the history counts as done only if it is older than every
    snapshot the table still has, the only way snapshot expiry (oldest first) removes one.
    A commit younger than a retained snapshot was never this table's (a copy or a restore
    from older metadata): its work is done again, which is idempotent, instead of being
    taken as done, which would lose it. An empty history vouches for nothing.
    """
    if not history:
        return {}
    oldest = min(history.values())
    return {p: r.snapshot_id for p, r in records.items()
            if r.state == CheckpointState.COMMITTED and r.snapshot_id is not None
            and digests.get(p) == r.digest and r.snapshot_id not in history and r.updated_at < oldest}


def default_directory(warehouse: str | os.PathLike[str]) -> Path:
    """``<warehouse>/.backfill-checkpoints``: next to the data it describes, so it goes
    wherever the warehouse goes and survives the Ray cluster."""
    return Path(warehouse) / CHECKPOINT_DIRNAME


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class PartitionCheckpoint:
    """State of one partition within one run key.

    ``attempts`` counts transitions to 'running' over all runs with this digest (a digest
    change starts again at 0). ``run_id`` is the run that last touched the record.
    ``snapshot_id`` is set once committed (None for a commit that changed no row).
    ``run_attempt`` is the attempt number, within ``run_id``, of the last 'running' mark:
    when that run's driver dies mid-attempt, the next run writes the audit row the dead
    driver could not, under that run id and attempt number, so no attempt goes unrecorded.
    """

    partition: str
    state: CheckpointState
    digest: str
    snapshot_id: int | None = None
    attempts: int = 0
    error: str | None = None
    run_id: str | None = None
    updated_at: datetime = dataclasses.field(default_factory=_now)
    run_attempt: int = 0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["updated_at"] = self.updated_at.isoformat()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PartitionCheckpoint:
        snap = d.get("snapshot_id")
        return cls(
            partition=str(d["partition"]), state=CheckpointState(d["state"]), digest=str(d["digest"]),
            snapshot_id=int(snap) if snap is not None else None,
            attempts=int(d.get("attempts", 0)), error=d.get("error"), run_id=d.get("run_id"),
            updated_at=datetime.fromisoformat(d["updated_at"]),
            run_attempt=int(d.get("run_attempt", 0)),
        )


@runtime_checkable
class CheckpointStore(Protocol):
    """What the driver needs from a checkpoint store; every call is durable on return
    (except for the in-memory store)."""

    def begin(self, key: str, run_id: str,
              tasks: Sequence[tuple[str, str]]) -> dict[str, PartitionCheckpoint]:
        """Register ``(partition, digest)`` pairs of a starting run; returns the key's state.

        New partition -> pending. Same digest: committed stays committed, a stale
        'running' (left by a driver that died) becomes pending, others keep their state.
        Different digest -> reset to pending with attempts 0 (the work changed).
        Partitions of the key that are not in ``tasks`` are kept untouched.
        """
        ...

    def mark(self, key: str, partition: str, state: CheckpointState | str, snapshot_id: int | None = None,
             error: str | None = None, run_id: str | None = None,
             run_attempt: int | None = None) -> PartitionCheckpoint:
        """Move ``partition`` to ``state``; 'running' increments attempts and records
        ``run_attempt``. KeyError if the partition was never begun under ``key``."""
        ...

    def load(self, key: str) -> dict[str, PartitionCheckpoint]:
        """All records of ``key`` (empty when unknown)."""
        ...

    def committed(self, key: str) -> dict[str, tuple[str, int | None]]:
        """partition -> (digest, snapshot_id) of the committed partitions of ``key``."""
        ...

    def forget(self, key: str) -> None:
        """Drop every record of ``key`` (no error when unknown)."""
        ...


# --- shared semantics ---------------------------------------------------------------

def _apply_begin(records: dict[str, PartitionCheckpoint], run_id: str,
                 tasks: Sequence[tuple[str, str]]) -> dict[str, PartitionCheckpoint]:
    out = dict(records)
    now = _now()
    for partition, digest in tasks:
        old = out.get(partition)
        if old is None or old.digest != digest:
            out[partition] = PartitionCheckpoint(partition, CheckpointState.PENDING, digest, run_id=run_id,
                                                 updated_at=now)
        elif old.state == CheckpointState.RUNNING:
            out[partition] = dataclasses.replace(old, state=CheckpointState.PENDING, run_id=run_id, updated_at=now)
        elif old.state != CheckpointState.COMMITTED:
            out[partition] = dataclasses.replace(old, run_id=run_id, updated_at=now)
    return out


def _apply_mark(records: dict[str, PartitionCheckpoint], key: str, partition: str, state: CheckpointState | str,
                snapshot_id: int | None, error: str | None,
                run_id: str | None, run_attempt: int | None = None) -> PartitionCheckpoint:
    if state not in {s.value for s in CheckpointState}:
        raise ValueError(f"checkpoint state must be one of {[s.value for s in CheckpointState]}, got {state!r}")
    state = CheckpointState(state)
    old = records.get(partition)
    if old is None:
        raise KeyError(f"partition {partition!r} was not begun under checkpoint key {key!r}")
    return dataclasses.replace(
        old, state=state,
        snapshot_id=snapshot_id if state == CheckpointState.COMMITTED else None,
        attempts=old.attempts + (1 if state == CheckpointState.RUNNING else 0),
        # keep the last error visible while a retry runs; clear it once committed
        error=(error[:_MAX_ERROR_CHARS] if error is not None
               else (None if state == CheckpointState.COMMITTED else old.error)),
        run_id=run_id if run_id is not None else old.run_id,
        updated_at=_now(),
        run_attempt=run_attempt if run_attempt is not None else old.run_attempt,
    )


def _committed_of(records: Mapping[str, PartitionCheckpoint]) -> dict[str, tuple[str, int | None]]:
    return {p: (r.digest, r.snapshot_id) for p, r in records.items() if r.state == CheckpointState.COMMITTED}


class _RecordStore:
    """Implements the interface over ``_read``/``_write``/``_delete`` of whole key record
    sets, under one lock so read-modify-write cycles of concurrent threads do not interleave."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def _read(self, key: str) -> dict[str, PartitionCheckpoint]:
        raise NotImplementedError

    def _write(self, key: str, records: dict[str, PartitionCheckpoint]) -> None:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    def begin(self, key: str, run_id: str,
              tasks: Sequence[tuple[str, str]]) -> dict[str, PartitionCheckpoint]:
        with self._lock:
            records = _apply_begin(self._read(key), run_id, [(str(p), str(d)) for p, d in tasks])
            self._write(key, records)
            return dict(records)

    def mark(self, key: str, partition: str, state: CheckpointState | str, snapshot_id: int | None = None,
             error: str | None = None, run_id: str | None = None,
             run_attempt: int | None = None) -> PartitionCheckpoint:
        with self._lock:
            records = self._read(key)
            rec = _apply_mark(records, key, partition, state, snapshot_id, error, run_id, run_attempt)
            records[partition] = rec
            self._write(key, records)
            return rec

    def load(self, key: str) -> dict[str, PartitionCheckpoint]:
        with self._lock:
            return dict(self._read(key))

    def committed(self, key: str) -> dict[str, tuple[str, int | None]]:
        return _committed_of(self.load(key))

    def forget(self, key: str) -> None:
        with self._lock:
            self._delete(key)


class InMemoryCheckpointStore(_RecordStore):
    """Process-local store for unit tests; nothing survives the process."""

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[str, dict[str, PartitionCheckpoint]] = {}

    def _read(self, key: str) -> dict[str, PartitionCheckpoint]:
        return dict(self._data.get(key, {}))

    def _write(self, key: str, records: dict[str, PartitionCheckpoint]) -> None:
        self._data[key] = dict(records)

    def _delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._data)


# --- durable files --------------------------------------------------------------------

_SLUG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def key_filename(key: str) -> str:
    """A safe, unique file name for ``key``: a readable slug plus a hash of the exact key.

    The slug keeps files recognisable; the hash makes keys that slug alike ('a/b', 'a_b')
    distinct and makes '/', '..', NUL or very long keys harmless.
    """
    slug = _SLUG_BAD.sub("_", key).strip("._-")[:64] or "key"
    return f"{slug}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}.json"


class FileCheckpointStore(_RecordStore):
    """One JSON file per key in a folder where the warehouse lives; every write whole.

    ``location`` is a local folder (temp file, fsync, rename) or an object-store prefix
    such as ``s3://warehouse/.backfill-checkpoints`` (one PUT per write, seen whole or
    not at all), reached with the catalog's storage ``properties``. Files whose name
    starts with '.' (temp files of an interrupted write) are never read. Concurrent
    writers in *different* processes on the same key are not coordinated: in a run, only
    the checkpoint actor (or one driver) writes.
    """

    def __init__(self, location: str | os.PathLike[str], properties: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._folder = open_folder(os.fspath(location), properties)
        self.location = self._folder.location

    @classmethod
    def on(cls, folder: Folder) -> FileCheckpointStore:
        """A store on an already opened folder (tests reach the object-store path this way)."""
        store = cls.__new__(cls)
        _RecordStore.__init__(store)
        store._folder, store.location = folder, folder.location
        return store

    @property
    def directory(self) -> Path:
        """The local folder (a local store only)."""
        return local_path(self.location)

    def path_of(self, key: str) -> Path:
        """The local file of ``key`` (a local store only)."""
        return self.directory / key_filename(key)

    def _read(self, key: str) -> dict[str, PartitionCheckpoint]:
        raw = self._folder.read(key_filename(key))
        if raw is None:
            return {}
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("key") != key:  # a 64-bit hash collision, or a hand-copied file
            raise ValueError(f"checkpoint file {key_filename(key)} in {self.location} belongs to key "
                             f"{doc.get('key')!r}, not {key!r}")
        return {p: PartitionCheckpoint.from_json(r) for p, r in doc["partitions"].items()}

    def _write(self, key: str, records: dict[str, PartitionCheckpoint]) -> None:
        doc = {"version": _FORMAT_VERSION, "key": key,
               "partitions": {p: r.to_json() for p, r in sorted(records.items())}}
        self._folder.write(key_filename(key), json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))

    def _delete(self, key: str) -> None:
        self._folder.delete(key_filename(key))

    def keys(self) -> list[str]:
        """Every key with a checkpoint file (temp and foreign files skipped)."""
        out = []
        for name in self._folder.names():
            if not name.endswith(".json"):
                continue
            try:
                key = json.loads((self._folder.read(name) or b"").decode("utf-8"))["key"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(key, str) and key_filename(key) == name:
                out.append(key)
        return out


# --- Ray actor ------------------------------------------------------------------------

class _CheckpointActor(_RecordStore):
    """Body of the detached actor: memory for reads, write-through to files for durability.

    The file is written *before* memory changes, so an acknowledged call is on disk and a
    failed write leaves memory equal to disk. The constructor reloads every key from the
    directory, which is also what a restart (``max_restarts``) or a new cluster does.
    """

    def __init__(self, location: str, properties: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._files = FileCheckpointStore(location, properties)
        self._mem: dict[str, dict[str, PartitionCheckpoint]] = {
            k: self._files.load(k) for k in self._files.keys()}
        self._started = _now()

    def _read(self, key: str) -> dict[str, PartitionCheckpoint]:
        return dict(self._mem.get(key, {}))

    def _write(self, key: str, records: dict[str, PartitionCheckpoint]) -> None:
        self._files._write(key, records)
        self._mem[key] = dict(records)

    def _delete(self, key: str) -> None:
        self._files._delete(key)
        self._mem.pop(key, None)

    def use_storage(self, properties: Mapping[str, str]) -> None:
        """Reach the folder with these storage properties from now on: the actor outlives the
        driver that made it, and credentials a catalog vends expire."""
        self._files = FileCheckpointStore(self._files.location, properties)

    def info(self) -> dict[str, Any]:
        return {"directory": self._files.location, "pid": os.getpid(),
                "started_at": self._started.isoformat(), "keys": sorted(self._mem)}


def normal_location(location: str | os.PathLike[str]) -> str:
    """One spelling per checkpoint folder: an absolute local path, or the URI without a final '/'."""
    text = os.fspath(location)
    return str(local_path(text)) if is_local(text) else text.rstrip("/")


def actor_name_for(directory: str | os.PathLike[str], base: str = CHECKPOINT_ACTOR_NAME) -> str:
    """One actor per checkpoint folder, so two warehouses on one cluster never share state."""
    resolved = normal_location(directory)
    return f"{base}-{hashlib.sha256(resolved.encode('utf-8')).hexdigest()[:12]}"


class RayCheckpointStore:
    """Client of the detached checkpoint actor; same interface, synchronous calls.

    Get-or-create by name in an explicit namespace, so drivers of any job namespace (or
    none) find the same actor. The actor takes no CPU and is pinned to the head node,
    where a local warehouse directory lives and which lives as long as the cluster (on an
    object store the files are reachable from anywhere, and so is a new actor's reload).
    Each call waits at most ``timeout`` seconds (``ray.exceptions.GetTimeoutError``).

    Args:
        directory: checkpoint folder (:meth:`backfill.config.Config.checkpoint_location`):
            a local path or an object-store URI.
        properties: the catalog's storage properties, for an object-store folder; they
            reach only the actor (never its name, ``info`` or a log line).
        namespace: fixed Ray namespace (``cfg.run.checkpoint_namespace``).
        name: actor name; default ``backfill-checkpoints-<hash of directory>``.
        timeout: seconds per call.
        policy: the run's retry policy; calls ride out an actor restart for its
            ``ride_out_seconds`` (at least three call timeouts).
    """

    def __init__(self, directory: str | os.PathLike[str], namespace: str = RAY_NAMESPACE,
                 name: str | None = None, timeout: float = 60.0, policy: RetryPolicy | None = None,
                 properties: Mapping[str, str] | None = None) -> None:
        policy = policy or RetryPolicy()
        self._policy = dataclasses.replace(policy, ride_out_seconds=max(policy.ride_out_seconds, 3 * timeout))
        self.directory = normal_location(directory)
        self._properties = dict(properties or {})
        self.namespace = namespace
        self.name = name or actor_name_for(self.directory)
        self.timeout = timeout
        self.actor = self._connect()
        found = self.info()["directory"]
        if found != self.directory:
            raise ValueError(f"checkpoint actor {namespace}/{self.name} serves {found}, "
                             f"not {self.directory}; pass another name")
        if self._properties:  # an actor an earlier driver made holds that driver's credentials
            self._call("use_storage", self._properties)

    def _connect(self) -> Any:
        import ray

        return (
            ray.remote(_CheckpointActor)
            .options(
                name=self.name, namespace=self.namespace, lifetime="detached", get_if_exists=True,
                num_cpus=0, resources={"node:__internal_head__": 0.001},
                scheduling_strategy="DEFAULT",   # escape a caller's placement group
                max_restarts=-1,                 # safe: the constructor reloads from files
                max_task_retries=0,              # a retried 'running' would count twice
                max_concurrency=1,               # one read-modify-write at a time
            )
            .remote(self.directory, self._properties)
        )

    def _call(self, method: str, *args: Any) -> Any:
        """Call the actor; ride out a restart (e.g. Ray's memory monitor killed it).

        The actor reloads its state from the files when it restarts, and if it is gone for
        good a new one is created on the same directory, so retrying loses nothing.
        """
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError
        from tenacity import Retrying

        # A restarting actor on a loaded node can take minutes to answer; every method is
        # safe to repeat (a repeated 'running' mark only counts one attempt too many).
        retried = (ActorUnavailableError, ActorDiedError, GetTimeoutError)
        for attempt in Retrying(**self._policy.ride_out(retried)):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.actor = self._connect()
                return ray.get(getattr(self.actor, method).remote(*args), timeout=self.timeout)
        raise AssertionError("unreachable")  # pragma: no cover

    def begin(self, key: str, run_id: str,
              tasks: Sequence[tuple[str, str]]) -> dict[str, PartitionCheckpoint]:
        return cast("dict[str, PartitionCheckpoint]", self._call("begin", key, run_id, [(p, d) for p, d in tasks]))

    def mark(self, key: str, partition: str, state: CheckpointState | str, snapshot_id: int | None = None,
             error: str | None = None, run_id: str | None = None,
             run_attempt: int | None = None) -> PartitionCheckpoint:
        return cast(PartitionCheckpoint,
                    self._call("mark", key, partition, state, snapshot_id, error, run_id, run_attempt))

    def load(self, key: str) -> dict[str, PartitionCheckpoint]:
        return cast("dict[str, PartitionCheckpoint]", self._call("load", key))

    def committed(self, key: str) -> dict[str, tuple[str, int | None]]:
        return cast("dict[str, tuple[str, int | None]]", self._call("committed", key))

    def forget(self, key: str) -> None:
        self._call("forget", key)

    def info(self) -> dict[str, Any]:
        """Directory, pid, start time and keys of the actor (for status and tests)."""
        return cast("dict[str, Any]", self._call("info"))

    def kill(self) -> None:
        """End the actor for good (files stay); the next client creates a new one."""
        import ray

        ray.kill(self.actor, no_restart=True)
