"""The process's logging: JSON lines, the sampled access log, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from longlink.logs import ACCESS, AccessSample, SecretMask, configure_logging, secrets_of
from longlink.settings import ApiKeyConfig, ConfigError, Settings, load_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    access = logging.getLogger(ACCESS)
    saved = (root.handlers[:], root.level, access.filters[:], access.level)
    yield
    root.handlers[:], access.filters[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    access.setLevel(saved[3])


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_extra_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), out, level="debug")
    logging.getLogger("longlink.gateway").info("conn %s replaces %s", "c2", "c1")
    logging.getLogger(ACCESS).debug(
        "conn c2 open", extra={"event": "conn_open", "conn_id": "c2", "rooms": ["a"]}
    )
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("longlink.x").exception("failed")
    first, second, third = (json.loads(line) for line in lines(out))
    assert first["level"] == "info" and first["logger"] == "longlink.gateway"
    assert first["message"] == "conn c2 replaces c1" and first["ts"].endswith("Z")
    assert second["level"] == "debug"
    assert (second["event"], second["conn_id"], second["rooms"]) == ("conn_open", "c2", ["a"])
    assert third["message"] == "failed" and "ValueError: boom" in third["exc"]


def test_the_access_log_is_debug_unless_sampled(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(Settings(), out)  # info, no sampling
    access = logging.getLogger(ACCESS)
    access.debug("push 1 accepted")
    assert lines(out) == []
    configure_logging(Settings(access_log_sample=1.0), out)
    access.debug("push 2 accepted")
    [line] = lines(out)
    assert " INFO longlink.access push 2 accepted" in line


def test_sampling_keeps_the_share_asked_for() -> None:
    draws = iter([0.05, 0.5, 0.09, 0.95])
    sample = AccessSample(0.1, verbose=False, rand=lambda: next(draws))
    records = [logging.makeLogRecord({"levelno": logging.DEBUG, "msg": str(i)}) for i in range(4)]
    kept = [r.msg for r in records if sample.filter(r)]
    assert kept == ["0", "2"]
    assert all(r.levelname == "INFO" for r in records if r.msg in kept)
    verbose = AccessSample(0.0, verbose=True)
    record = logging.makeLogRecord({"levelno": logging.DEBUG, "levelname": "DEBUG"})
    assert verbose.filter(record) and record.levelname == "DEBUG"


def test_secrets_are_masked_on_every_line(restore_logging: None) -> None:
    settings = Settings(
        api_key="the-api-key-0123",
        ticket_secret="the-ticket-secret-0123",
        token_secret="the-token-secret-0123",
        webhook_secret="the-webhook-secret",
        api_keys=(ApiKeyConfig("k", key="a-listed-key-0123"),),
    )
    assert set(secrets_of(settings)) >= {
        "the-api-key-0123",
        "the-ticket-secret-0123",
        "the-token-secret-0123",
        "the-webhook-secret",
        "a-listed-key-0123",
    }
    out = io.StringIO()
    configure_logging(settings, out, level="debug")
    log = logging.getLogger("longlink.test")
    log.warning("key %s and %s", "the-api-key-0123", "a-listed-key-0123")
    log.warning("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl in a message")
    log.warning("extra", extra={"detail": "the-webhook-secret"})
    try:
        raise RuntimeError("the-token-secret-0123 leaked into an exception")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    for secret in secrets_of(settings):
        assert secret not in text
    assert "eyJ" not in text
    assert text.count("[secret]") >= 5


def test_short_secrets_are_not_looked_for() -> None:
    assert SecretMask(["abc"]).mask("abc abc") == "abc abc"


def test_logging_settings_are_checked() -> None:
    assert load_settings(environ={"LONGLINK_LOG_FORMAT": "json"}).log_format == "json"
    assert load_settings(environ={"LONGLINK_LOG_LEVEL": "DEBUG"}).log_level == "DEBUG"
    for name, value in (
        ("LONGLINK_LOG_LEVEL", "loud"),
        ("LONGLINK_LOG_FORMAT", "xml"),
        ("LONGLINK_ACCESS_LOG_SAMPLE", "2"),
    ):
        with pytest.raises(ConfigError, match=name.removeprefix("LONGLINK_").lower()):
            load_settings(environ={name: value})
