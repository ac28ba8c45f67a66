"""Keeping secrets out of every file, log and console line.

Secrets reach churnwise as connection URIs (`data.uri`, `score.postgres.uri`, `mlflow.tracking_uri`, most
often from the environment), as settings whose name says they are secret (`*password*`, `*token*`,
`*secret*`), and as well-known environment variables (PGPASSWORD, MLFLOW_TRACKING_PASSWORD, ...).

- `redact(uri)` shows a URI with its password replaced by `***`, whatever characters the password holds
  (`/`, `#`, `@`, `?`, percent-encoded or not): the user-info part ends at the last `@` before the host.
- `secret_values(config)` lists the secret strings a run holds (each in its raw, percent-decoded and
  percent-encoded forms), and `scrub(text, secrets)` hides them in any text.
- `SecretFilter` is a logging filter that scrubs every record, so a secret a library puts into a message
  (a driver error, a URL in a warning) never reaches the console or a log file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET_LENGTH = 3  # shorter values are not replaced everywhere in text (they would garble every line)
SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|apikey|credential)", re.IGNORECASE)
URI_KEY = re.compile(r"(^|_)(uri|url|dsn)$", re.IGNORECASE)
SECRET_ENVIRONMENT = (
    "PGPASSWORD",
    "CHURNWISE_PG_URI",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_URI",
    "DATABRICKS_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_KEY",
)
# key=value connection strings: password=secret or password='se cret' (or an unterminated 'se cret).
KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|\S+)", re.IGNORECASE)
# A password query parameter of a URI: ?password=... or &password=... up to the next & or the end.
QUERY_PASSWORD = re.compile(r"([?&](?:password|pass|pwd|token)=)[^&\s]*", re.IGNORECASE)
# scheme://user:password@ in free text (a driver message): the password runs to the last '@' of the token.
TEXT_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"']*:)[^\s\"']*@")


def _userinfo_split(uri: str) -> tuple[str, str, str] | None:
    """(scheme://, user-info, rest) of a URI with user-info, cut at the last '@' before any whitespace."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo, _, hosts = rest.rpartition("@")
    return scheme + sep, userinfo, hosts


def uri_password(uri: str) -> str | None:
    """The password written into a URI (user-info or a password= parameter), as written, or None."""
    if "://" not in uri:
        found = KV_PASSWORD.search(uri)
        return found.group(2).strip("'") if found else None
    parts = _userinfo_split(uri)
    if parts is not None and ":" in parts[1]:
        return parts[1].split(":", 1)[1]
    found = QUERY_PASSWORD.search(uri)
    return found.group(0).split("=", 1)[1] if found else None


def redact(uri: str) -> str:
    """`uri` with its password (user-info, a password= parameter, or a key/value connection string)
    replaced by `***`."""
    text = str(uri)
    if "://" not in text:
        return KV_PASSWORD.sub(rf"\1{MASK}", text)
    parts = _userinfo_split(text)
    if parts is not None:
        scheme, userinfo, hosts = parts
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        text = f"{scheme}{userinfo}@{hosts}"
    return QUERY_PASSWORD.sub(rf"\1{MASK}", text)


def _forms(secret: str) -> set[str]:
    """A secret as written, percent-decoded and percent-encoded (each form a URI or a log may show)."""
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def secret_values(
    config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> set[str]:
    """Every secret string in a (resolved, plain) config and the environment, in each form it may appear."""
    found: set[str] = set()

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and node:
            if SECRET_KEY.search(key):
                found.update(_forms(node))
            elif URI_KEY.search(key) or "://" in node:
                password = uri_password(node)
                if password:
                    found.update(_forms(password))

    walk(dict(config or {}), "")
    env = os.environ if environ is None else environ
    for name in SECRET_ENVIRONMENT:
        value = env.get(name)
        if not value:
            continue
        password = uri_password(value) if ("://" in value or "=" in value) else value
        if name.endswith("URI") and password is None:
            continue
        if password:
            found.update(_forms(password))
    return found


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URI password and every one of `secrets` replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = TEXT_USERINFO.sub(rf"\1{MASK}@", text)
    text = QUERY_PASSWORD.sub(rf"\1{MASK}", text)
    return KV_PASSWORD.sub(rf"\1{MASK}", text)


def redacted_config(node: Any, secrets: Iterable[str] = (), key: str = "") -> Any:
    """A plain config with secret settings masked, URIs redacted and any secret inside other text scrubbed."""
    secrets = tuple(secrets)
    if isinstance(node, Mapping):
        return {k: redacted_config(v, secrets, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redacted_config(v, secrets, key) for v in node]
    if isinstance(node, str):
        if node and SECRET_KEY.search(key):
            return MASK
        if URI_KEY.search(key) or "://" in node:
            node = redact(node)
        return scrub(node, secrets)
    return node


class SecretFilter(logging.Filter):
    """Scrubs secrets from every record a handler emits (message, arguments and traceback text)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        if record.stack_info:
            message += "\n" + record.stack_info
            record.stack_info = None
        record.msg, record.args = scrub(message, self.secrets), None
        return True


def install_secret_filter(secrets: Iterable[str]) -> SecretFilter:
    """Attach one SecretFilter to every handler of the root logger (console and log file) and route Python
    warnings through logging, so neither can print a secret."""
    secret_filter = SecretFilter(secrets)
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretFilter)]:
            handler.removeFilter(old)
        handler.addFilter(secret_filter)
    return secret_filter
