"""TLS for every listener (PROTOCOL.md §1.5): one server context, reloadable.

With ``LONGLINK_TLS_CERT`` and ``LONGLINK_TLS_KEY`` (PEM files) set, the
WebSocket port speaks ``wss://``, the TCP port TLS and the HTTP port
``https://``, all from the one :class:`ssl.SSLContext` that
:func:`server_context` builds. :func:`reload_certificate` loads a new
certificate into that same object (SIGHUP): connections made afterwards get
the new one, open connections keep theirs.
"""

from __future__ import annotations

import ssl

from longlink.settings import ConfigError, Settings

__all__ = ["reload_certificate", "server_context"]


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The listeners' TLS context, or None when TLS is off; ConfigError when half set or bad."""
    cert, key = settings.tls_cert, settings.tls_key
    if not cert and not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    reload_certificate(context, settings)
    return context


def reload_certificate(context: ssl.SSLContext, settings: Settings) -> None:
    """Load ``settings``' certificate and key into ``context``; ConfigError, unchanged, if bad."""
    cert, key = settings.tls_cert, settings.tls_key
    if not cert or not key:
        raise ConfigError("tls_cert and tls_key: give both PEM files (or neither)")
    # Checked on a scratch context first: a bad pair must not half-replace the served one.
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert/tls_key ({cert}, {key}): {exc}") from exc
