"""The process's logging: text or JSON lines, the sampled access log, secrets masked.

The CLI calls :func:`configure_logging` once, with the settings
(``log_level``, ``log_format``, ``access_log_sample``); nothing else in
longlink configures logging. Modules log to ``logging.getLogger(__name__)``
as usual, and the records of the access log go to :data:`ACCESS`
(``longlink.access``) at DEBUG, with their fields as ``extra``:

=================  ============================================================
``event``          fields
=================  ============================================================
``conn_open``      ``conn_id``, ``user``, ``device``, ``transport``, ``rooms``
``conn_close``     ``conn_id``, ``user``, ``reason``
``push``           ``msg_id``, ``key`` (the key's *name*), ``target`` (the
                   kind), ``targets`` (how many), ``priority``,
                   ``guaranteed``, ``bytes``
=================  ============================================================

At ``log_level = "debug"`` every one of them is logged (at DEBUG). At any
other level, ``access_log_sample`` (0 to 1) is the share of them logged at
INFO instead: 0.01 logs one connection or push in a hundred, chosen at
random; 0 (the default) logs none.

No secret reaches a log line: no module logs a key, a ticket or a token, and
as a second line of defence every handler masks the configured secrets
(API keys, ticket, token and webhook secrets) and anything shaped like a JWT
(tickets and connection tokens are JWTs) as ``[secret]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from longlink.settings import Settings

__all__ = [
    "ACCESS",
    "AccessSample",
    "JsonFormatter",
    "SecretMask",
    "configure_logging",
    "secrets_of",
]

#: The access log's logger (connections opened and closed, pushes accepted).
ACCESS = "longlink.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: A JWT: three base64url parts, the first a JSON object (``eyJ`` is ``{"``).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
MASK = "[secret]"
#: Attributes every LogRecord has; anything else on a record came in ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value ``settings`` holds: API keys, and ticket, token and webhook secrets.

    A field is a secret when its name is ``api_key`` or contains ``secret``
    (so new secret settings are covered without a change here).
    """
    values: list[str] = []
    for field in dataclasses.fields(settings):
        if field.name == "api_key" or "secret" in field.name:
            value = getattr(settings, field.name)
            if isinstance(value, str) and value:
                values.append(value)
                # Lists of "kid:secret" (rotation): each secret on its own too.
                values.extend(item.partition(":")[2] for item in value.split(","))
    values.extend(entry.key for entry in settings.api_keys if entry.key)
    return [value for value in values if value]


class SecretMask(logging.Filter):
    """Replaces the given secrets and anything shaped like a JWT with ``[secret]``.

    Installed on handlers, so it sees every record they write, whichever
    logger it came from. Secrets shorter than 4 characters are not looked
    for (they would mask ordinary words).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        kept = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(s) for s in kept)) if kept else None

    def mask(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        return _JWT.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        for name, value in record.__dict__.items():
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, self.mask(value))
        return True


class AccessSample(logging.Filter):
    """On the access logger: keep a record at DEBUG when ``verbose``; otherwise keep
    a ``fraction`` of them, chosen at random, raised to INFO."""

    def __init__(
        self, fraction: float, *, verbose: bool, rand: Callable[[], float] = random.random
    ) -> None:
        super().__init__()
        self.fraction = fraction
        self.verbose = verbose
        self._random = rand

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if record.levelno >= logging.INFO:
            return True
        if self.fraction <= 0 or self._random() >= self.fraction:
            return False
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    settings: Settings, stream: TextIO | None = None, *, level: str | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as ``settings.log_format`` says.

    ``level`` overrides ``settings.log_level`` (the CLI's ``--log-level``).
    Replaces the handlers of the root logger; returns the new handler.
    """
    name = (level or settings.log_level).upper()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SecretMask(secrets_of(settings)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name)
    verbose = root.isEnabledFor(logging.DEBUG)
    access = logging.getLogger(ACCESS)
    for old_filter in access.filters[:]:
        access.removeFilter(old_filter)
    access.addFilter(AccessSample(settings.access_log_sample, verbose=verbose))
    # The records must be made to be sampled: below the root's level only when sampling.
    access.setLevel(logging.DEBUG if verbose or settings.access_log_sample > 0 else logging.NOTSET)
    return handler
