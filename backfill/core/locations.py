"""Where a location points: this machine's disk or somewhere else (an object store, HDFS).

One spelling for the whole tool: the configuration decides where checkpoints go with it,
and the storage layer picks its code path with it.
"""

from __future__ import annotations

from pathlib import Path


def is_local(location: str) -> bool:
    """True for a plain path or a ``file:`` URI; False for ``s3://``, ``gs://``, ``abfs://``..."""
    return "://" not in location or location.startswith("file:")


def local_path(location: str) -> Path:
    """Absolute path of a local location (``file:/x``, ``file:///x`` or a path)."""
    if location.startswith("file:"):
        location = "/" + location[len("file:"):].lstrip("/")
    return Path(location).expanduser().resolve()
