"""Offline validation of a Ray cluster-launcher file (``ray_cluster.yaml``).

Why this exists: ``ray up`` only finds a misspelled key or a wrong type after it has
started talking to the cloud. Ray's own check is the private pair
``ray.autoscaler._private.util.prepare_config`` / ``validate_config``; this module is
the ONLY place that touches it, so a Ray upgrade that moves it breaks one function.

What the two calls do (read from the installed Ray 2.60 sources):

- ``prepare_config`` merges the file over the provider's bundled ``defaults.yaml``
  (a shallow, top-level merge: a key you set replaces the default whole), prepends
  ``setup_commands`` to ``head_setup_commands``/``worker_setup_commands``, checks the
  docker section and fills each node type's ``min_workers``/``max_workers``. For the
  cloud providers (aws, gcp, azure, ...) it only reads a YAML file from the wheel: no
  network, no credentials. (``provider.type: local`` and ``kuberay`` take other paths.)
- ``validate_config`` checks the result against ``ray/autoscaler/ray-schema.json``
  (jsonschema; unknown keys are rejected at the top level and inside node types, and
  ``resources`` values must be non-negative integers), then that ``head_node_type`` is
  one of ``available_node_types`` and that the sum of ``min_workers`` fits ``max_workers``.

What is NOT checked here: the provider's ``bootstrap_config`` step of ``ray up`` (for
AWS: IAM role, key pair, subnets, security group, AMI, instance-type resources), which
needs the cloud and credentials.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from backfill.errors import ConfigError


def _where(error: Any) -> str:
    """``a.b.c`` path of a jsonschema error inside the document ('' at the top)."""
    return ".".join(str(p) for p in getattr(error, "absolute_path", ()))


def validate_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Validate a Ray cluster-launcher YAML offline; return the prepared config.

    The returned dict is what ``ray up`` would go on with (defaults merged, setup commands
    combined, per-node-type worker limits filled). Raises ConfigError naming the file and,
    for schema errors, the offending key path and jsonschema's message.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Ray cluster file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"Ray cluster file {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Ray cluster file {str(p)!r} must hold a mapping at the top level")
    if not isinstance(raw.get("provider"), dict) or "type" not in raw["provider"]:
        raise ConfigError(f"Ray cluster file {str(p)!r}: 'provider' with a 'type' is required")

    # Private Ray API: keep every use of it in this function.
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)
    except jsonschema.ValidationError as exc:
        where = _where(exc)
        at = f" at '{where}'" if where else ""
        raise ConfigError(
            f"Ray cluster file {str(p)!r} fails Ray's cluster schema{at}: {exc.message}"
        ) from None
    except NotImplementedError as exc:  # unknown provider type
        raise ConfigError(f"Ray cluster file {str(p)!r}: {exc}") from None
    except (ValueError, RuntimeError, AssertionError, KeyError, TypeError, AttributeError) as exc:
        # validate_config's own checks (head_node_type, min/max workers) raise ValueError;
        # a badly shaped section can make prepare_config fail before the schema runs.
        raise ConfigError(
            f"Ray cluster file {str(p)!r} is not a valid Ray cluster config: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return prepared
