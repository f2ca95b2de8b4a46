"""A folder of small files where the warehouse lives: local disk or an object store.

The run's own ledger (checkpoints) must outlive the cluster and must not depend on any
node's disk when the tables live on S3 and the nodes share nothing but the catalog and
the storage. Each file is written whole in one step: on local disk a temp file, fsync and
``os.replace`` (plus fsync of the folder); on an object store one PUT, which readers see
whole or not at all (there is no rename there, and none is needed).

Object stores are reached through pyiceberg's :class:`PyArrowFileIO` with the catalog's
own properties (``s3.endpoint``, ``s3.access-key-id``, ...), so the ledger uses exactly
the storage settings the tables are read with.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from backfill.core.locations import is_local, local_path
from backfill.core.secrets import scrub, secret_values
from backfill.errors import CheckpointUnwritable

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

class Folder(Protocol):
    """Whole-file reads and writes by name inside one folder."""

    location: str

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> list[str]: ...


def open_folder(location: str, properties: Mapping[str, str] | None = None) -> Folder:
    """The folder at ``location``; ``properties`` configure an object store's client."""
    if is_local(location):
        return LocalFolder(local_path(location))
    return ObjectFolder(location, properties or {})


def check_writable(location: str, properties: Mapping[str, str] | None = None) -> None:
    """Write and delete a probe file in ``location``, so a run never starts whose ledger
    cannot be kept. Object stores refuse writes outside tables in a table bucket (S3 Tables
    and its look-alikes) or with credentials a REST catalog vended for one table."""
    try:
        folder = open_folder(location, properties)
        probe = f".probe-{uuid.uuid4().hex}"
        folder.write(probe, b"")
        folder.delete(probe)
    except OSError as exc:
        reason = scrub(str(exc), secret_values([properties or {}]))
        raise CheckpointUnwritable(
            f"cannot write the checkpoint folder {location}: {reason}. Set [run] checkpoint_dir "
            "to a folder or object-store prefix the run can write, "
            "e.g. s3://my-bucket/backfill-checkpoints; nothing was written") from None


class LocalFolder:
    """A folder on this machine's disk; every write atomic and durable (POSIX)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)
        directory.mkdir(parents=True, exist_ok=True)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._fsync_dir()

    def delete(self, name: str) -> None:
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    def names(self) -> list[str]:
        """File names, temp files of an interrupted write (leading '.') left out."""
        return sorted(p.name for p in self.directory.iterdir() if p.is_file() and not p.name.startswith("."))

    def _fsync_dir(self) -> None:
        """Make the rename itself durable; a no-op where directories cannot be opened."""
        try:
            dfd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


class ObjectFolder:
    """A prefix in an object store (S3, GCS, ADLS, HDFS: whatever pyiceberg's Arrow IO reaches)."""

    def __init__(self, location: str, properties: Mapping[str, str]) -> None:
        from pyiceberg.io.pyarrow import PyArrowFileIO

        self.location = location.rstrip("/")
        io = PyArrowFileIO(dict(properties))
        scheme, netloc, path = io.parse_location(self.location)
        self._fs: FileSystem = io.fs_by_scheme(scheme, netloc)
        self._path = path.rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self._path}/{name}"

    def read(self, name: str) -> bytes | None:
        try:
            with self._fs.open_input_stream(self._key(name)) as f:
                return bytes(f.readall())
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        with self._fs.open_output_stream(self._key(name)) as f:
            f.write(data)

    def delete(self, name: str) -> None:
        try:
            self._fs.delete_file(self._key(name))
        except FileNotFoundError:
            return

    def names(self) -> list[str]:
        from pyarrow.fs import FileSelector, FileType

        infos = self._fs.get_file_info(FileSelector(self._path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == FileType.File and not i.base_name.startswith("."))
