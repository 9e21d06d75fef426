"""The SDK's TLS contexts: one per CA file, shared by every client of the process.

A context loads the CA store (the platform's, or ``ca_file``): about 840 KiB
each. Made per client — as ``httpx.AsyncClient(verify=True)`` does — 10,000
clients in one process (a load test, a device simulator) held 8 GiB of them.
A context is safe to share between connections; the SDK never changes one
after it is made.
"""

from __future__ import annotations

import functools
import ssl

__all__ = ["tls_context"]


@functools.cache
def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The shared client context that trusts ``ca_file`` (None: the platform's CAs)."""
    return ssl.create_default_context(cafile=ca_file)
