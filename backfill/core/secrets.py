"""Keeping catalog secrets out of every log line, audit row, checkpoint and error.

Error text comes from catalog clients and Spark, which may quote a URI with a password
or a token. Everything shown to a person or written to a table passes through
:func:`scrub` with the secrets of the configured catalog, and property maps are shown
through :func:`redact_properties`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Property keys whose values are secrets: never logged, audited or printed.
SECRET_KEY_MARKERS = ("password", "secret", "token", "credential", "key")


def is_secret_key(key: str) -> bool:
    """True for catalog property keys whose values must never be shown."""
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_KEY_MARKERS)


def redact_url(value: str) -> str:
    """``value`` with a URL password and secret-keyed query parameters replaced by ``***``.

    Handles ``scheme://user:password@host/...`` and ``...?token=...&password=...`` (also
    inside ``jdbc:...`` URLs); anything that is not a URL is returned unchanged.
    """
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return "***"  # unparsable: do not risk showing it
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@", 1)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, "***" if is_secret_key(k) else v) for k, v in pairs], safe="*")
    path = parts.path
    if "://" in path:  # jdbc:postgresql://user:pw@host/db: the inner URL is the path
        path = redact_url(path)
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def redact_properties(props: Mapping[str, Any]) -> dict[str, str]:
    """Secret-keyed values become ``***``; secrets inside URL values are replaced too."""
    return {k: ("***" if is_secret_key(k) else redact_url(str(v))) for k, v in props.items()}


def secret_values(props: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every secret string of the given property maps, to scrub from free text.

    That is the values of secret keys, URL passwords and secret query parameters. Values
    shorter than 4 characters are left out (scrubbing them would mangle ordinary text).
    """
    found: set[str] = set()
    for mapping in props:
        for k, v in mapping.items():
            text = str(v)
            if is_secret_key(k):
                found.add(text)
                continue
            if "://" not in text:
                continue
            for url in (text, text.split(":", 1)[1] if text.startswith("jdbc:") else ""):
                try:
                    parts = urlsplit(url)
                    if parts.password:
                        found.add(parts.password)
                    found.update(v for k2, v in parse_qsl(parts.query) if is_secret_key(k2))
                except ValueError:
                    found.add(text)
    return {s for s in found if len(s) >= 4}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
