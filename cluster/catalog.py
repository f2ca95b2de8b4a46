"""Turn a ``CatalogConfig`` into the settings Spark and pyiceberg need to reach one catalog.

Both engines must see the same catalog: Spark commits the MERGEs, pyiceberg creates
tables and reads audits. Catalog properties therefore pass through unchanged to both
sides (``spark.sql.catalog.<name>.<key>`` and ``load_catalog(name, **props)``), with
per-side extras only where the two spell a setting differently. The ``embedded`` type is
resolved here into a plain ``hive`` catalog served by :class:`EmbeddedMetastore`, so
nothing downstream needs to know it exists.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backfill.config import CatalogConfig
from backfill.core.secrets import redact_properties, redact_url, scrub, secret_values
from backfill.errors import EnvironmentProblem
from cluster.metastore import EmbeddedMetastore

SPARK_CATALOG_CLASS = "org.apache.iceberg.spark.SparkCatalog"
GLUE_CATALOG_IMPL = "org.apache.iceberg.aws.glue.GlueCatalog"
#: Catalog types Iceberg's SparkCatalog understands through its ``type`` property.
SPARK_NATIVE_TYPES = frozenset({"hive", "rest", "hadoop", "jdbc", "nessie"})
EMBEDDED = "embedded"
#: pyiceberg needs this for a Hive 2.x metastore (the embedded one is Hive 2.3.9).
EMBEDDED_PYICEBERG_DEFAULTS: Mapping[str, str] = {"hive.hive2-compatible": "true"}


def _redact(props: Mapping[str, str]) -> dict[str, str]:
    """Secret-keyed values become ``***``; so do URL passwords and secret query parameters."""
    return redact_properties(props)


_redact_url = redact_url


@dataclass(frozen=True)
class ResolvedCatalog:
    """A catalog ready to use: its name, Iceberg type and connection properties.

    ``spark_extra`` and ``pyiceberg_extra`` hold keys for one engine only (the config's
    ``spark_properties`` / ``pyiceberg_properties``); they win over ``properties``.
    """

    name: str
    type: str
    properties: Mapping[str, str]
    spark_extra: Mapping[str, str] = field(default_factory=dict)
    pyiceberg_extra: Mapping[str, str] = field(default_factory=dict)

    def spark_conf(self) -> dict[str, str]:
        """Spark settings registering this catalog as an Iceberg ``SparkCatalog``."""
        prefix = f"spark.sql.catalog.{self.name}"
        conf = {prefix: SPARK_CATALOG_CLASS}
        merged = {**self.properties, **self.spark_extra}
        # Iceberg refuses a catalog with both ``type`` and ``catalog-impl``: an explicit
        # catalog-impl wins, and other types only pass their properties through.
        if "catalog-impl" not in merged:
            if self.type in SPARK_NATIVE_TYPES:
                conf[f"{prefix}.type"] = self.type
            elif self.type == "glue":
                conf[f"{prefix}.catalog-impl"] = GLUE_CATALOG_IMPL
        for key, value in merged.items():
            conf[f"{prefix}.{key}"] = str(value)
        return conf

    def pyiceberg_properties(self) -> dict[str, str]:
        """Keyword arguments for ``pyiceberg.catalog.load_catalog(name, **props)``.

        pyiceberg spells some types differently (Iceberg's ``jdbc`` is pyiceberg's ``sql``
        with an SQLAlchemy uri): ``pyiceberg_properties`` in the config override any key.
        """
        props = {"type": self.type}
        props.update({k: str(v) for k, v in self.properties.items()})
        props.update({k: str(v) for k, v in self.pyiceberg_extra.items()})
        return props

    @property
    def uri(self) -> str | None:
        """The catalog's ``uri`` property (thrift or REST endpoint), if it has one."""
        return self.properties.get("uri")

    def redacted(self) -> dict[str, Any]:
        """Name, type and properties with secret values replaced by ``***``, for display."""
        return {
            "name": self.name,
            "type": self.type,
            "properties": _redact(self.properties),
            "spark_properties": _redact(self.spark_extra),
            "pyiceberg_properties": _redact(self.pyiceberg_extra),
        }

    def secrets(self) -> set[str]:
        """Every secret value of this catalog, to scrub from exception text and logs."""
        return secret_values((self.properties, self.spark_extra, self.pyiceberg_extra))


def resolve_catalog(cfg: CatalogConfig, start_service: bool = True) -> ResolvedCatalog:
    """What Spark and pyiceberg need for ``cfg``; starts the embedded service if asked.

    ``embedded`` becomes a ``hive`` catalog on the warehouse's :class:`EmbeddedMetastore`
    (started, or reused if already running, when ``start_service``); other types pass
    through, with ``warehouse`` added as a property when set and not given already.
    """
    if cfg.type == EMBEDDED:
        metastore = EmbeddedMetastore(cfg.warehouse_path)
        uri = metastore.start() if start_service else metastore.uri
        props = {"uri": uri, "warehouse": cfg.warehouse_path.as_uri(), **cfg.properties}
        return ResolvedCatalog(
            name=cfg.name,
            type="hive",
            properties=props,
            spark_extra=dict(cfg.spark_properties),
            pyiceberg_extra={**EMBEDDED_PYICEBERG_DEFAULTS, **cfg.pyiceberg_properties},
        )
    props = dict(cfg.properties)
    if cfg.warehouse and "warehouse" not in props:
        props["warehouse"] = cfg.warehouse
    return ResolvedCatalog(
        name=cfg.name,
        type=cfg.type,
        properties=props,
        spark_extra=dict(cfg.spark_properties),
        pyiceberg_extra=dict(cfg.pyiceberg_properties),
    )


def load_pyiceberg_catalog(resolved: ResolvedCatalog) -> Any:
    """A pyiceberg ``Catalog`` for ``resolved``, checked with one cheap call.

    Connection failures become EnvironmentProblem naming the catalog and its (redacted)
    URI, so the user learns which service to start instead of reading a socket trace.
    """
    from pyiceberg.catalog import load_catalog

    refused = _refusals()
    props = resolved.pyiceberg_properties()
    caught: list[warnings.WarningMessage] = []
    try:
        # pyiceberg quotes the full REST uri (user info and query included) in warnings:
        # collect them and re-issue them, outside the recording block, with secrets scrubbed.
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            try:
                catalog = load_catalog(resolved.name, **props)
                catalog.list_namespaces()
            finally:
                caught = list(recorded)
    except (OSError, ConnectionError) as exc:
        _rewarn(caught, resolved)
        raise _unreachable(resolved, exc) from None
    except refused as exc:
        _rewarn(caught, resolved)
        raise _refused(resolved, exc) from None
    except Exception as exc:  # thrift and HTTP clients raise their own transport errors
        _rewarn(caught, resolved)
        if _looks_like_connection_error(exc):
            raise _unreachable(resolved, exc) from None
        text = f"{type(exc).__name__}: {exc}"
        clean = scrub(text, resolved.secrets())
        if clean != text:  # the client quoted a secret: never let it reach a log or terminal
            raise EnvironmentProblem(
                f"cannot open catalog {resolved.name!r} ({resolved.type}): {clean}"
            ) from None
        raise
    _rewarn(caught, resolved)
    return catalog


def _rewarn(caught: list[warnings.WarningMessage], resolved: ResolvedCatalog) -> None:
    """Re-issue recorded warnings with every catalog secret replaced by ``***``."""
    secrets = resolved.secrets()
    for w in caught:
        warnings.warn_explicit(scrub(str(w.message), secrets), w.category, w.filename, w.lineno)


def _looks_like_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TTransportException", "ConnectionError", "ConnectTimeout", "ReadTimeout"}:
        return True
    text = str(exc).lower()
    return any(s in text for s in ("connection refused", "could not connect", "timed out"))


def _refusals() -> tuple[type[BaseException], ...]:
    """Error types of a catalog that answered but would not let us in: REST 401/403 and
    OAuth failures, and a SQL catalog's database refusing the connection or the password."""
    from pyiceberg.exceptions import AuthorizationExpiredError, ForbiddenError, OAuthError, UnauthorizedError

    found: list[type[BaseException]] = [ForbiddenError, UnauthorizedError, OAuthError, AuthorizationExpiredError]
    try:
        from sqlalchemy.exc import OperationalError  # optional: pyiceberg's SQL catalog only
    except ImportError:
        pass
    else:
        found.append(OperationalError)
    return tuple(found)


def _refused(resolved: ResolvedCatalog, exc: BaseException) -> EnvironmentProblem:
    where = _redact(resolved.properties).get("uri", "(no uri property)")
    detail = scrub(f"{type(exc).__name__}: {exc}", resolved.secrets())
    return EnvironmentProblem(
        f"catalog {resolved.name!r} ({resolved.type}) at {where} refused the connection: {detail}. "
        "Check that it is running and the credential, token, keys or password in [catalog] properties "
        "(and pyiceberg_properties)")


def _unreachable(resolved: ResolvedCatalog, exc: BaseException) -> EnvironmentProblem:
    where = _redact(resolved.properties).get("uri", "(no uri property)")
    # Clients quote the URL they called (query string included): scrub every secret.
    detail = scrub(str(exc), resolved.secrets())
    return EnvironmentProblem(
        f"cannot reach catalog {resolved.name!r} ({resolved.type}) at {where}: {detail}. Check that "
        "the catalog service is running (the embedded one starts with "
        "`iceberg-backfill catalog start`) and that the uri is right"
    )
