"""The offline store seam: guaranteed messages kept until acked or expired.

:class:`OfflineStore` (``base``) is the seam; :class:`SqliteStore` (``sqlite``)
is the embedded default; :class:`Sweeper` (``sweep``) removes what expires.
"""

from longlink.store.base import (
    OfflineStore,
    StoreError,
    device_recipient,
    recipients_of,
    recipients_of_conn,
    user_recipient,
)
from longlink.store.sqlite import SqliteStore

__all__ = [
    "OfflineStore",
    "SqliteStore",
    "StoreError",
    "device_recipient",
    "recipients_of",
    "recipients_of_conn",
    "user_recipient",
]
