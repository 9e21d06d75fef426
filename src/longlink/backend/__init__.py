"""A small Python client for business backends: push, query, kick, sign tickets.

::

    from longlink.backend import LonglinkBackend

    async with LonglinkBackend("http://127.0.0.1:8080", api_key=KEY, ticket_secret=SECRET) as ll:
        ticket = ll.sign_ticket("alice", ttl_s=300)       # hand it to alice's app
        msg_id = await ll.push(to={"users": ["alice"]}, data={"text": "hi"})
        ids = await ll.push_batch([Push({"rooms": ["lobby"]}, "a"), Push({"all": True}, "b")])
        print(await ll.online())

:class:`LonglinkBackendSync` does the same, blocking. 429 and 503 answers are
retried after their ``Retry-After`` within a :class:`RetryPolicy`; see
docs/backend-quickstart.md and :mod:`longlink.backend.calls` for what is
retried and what is not.
"""

from longlink.backend.calls import NO_RETRY, Push, RetryPolicy, sign_ticket
from longlink.backend.client import LonglinkBackend, LonglinkBackendSync
from longlink.backend.errors import (
    ApiCallError,
    BackendError,
    BadRequest,
    ConnectionFailed,
    Forbidden,
    NotFound,
    Overloaded,
    RateLimited,
    TooLarge,
    Unauthorized,
)

__all__ = [
    "NO_RETRY",
    "ApiCallError",
    "BackendError",
    "BadRequest",
    "ConnectionFailed",
    "Forbidden",
    "LonglinkBackend",
    "LonglinkBackendSync",
    "NotFound",
    "Overloaded",
    "Push",
    "RateLimited",
    "RetryPolicy",
    "TooLarge",
    "Unauthorized",
    "sign_ticket",
]
