"""Shared fixtures: uvloop for every async test, a real node on free ports, timeouts.

No test sleeps to wait for an event: each awaits the event with a timeout of
``WAIT`` seconds (scaled by ``LONGLINK_TEST_TIMEOUT_SCALE`` on slow machines).
State with no event to await (a key expiring, another process's counts)
is waited for with :func:`eventually`, the one polling loop of the suite.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvloop

from longlink.node import Node
from longlink.settings import Settings

SCALE = float(os.environ.get("LONGLINK_TEST_TIMEOUT_SCALE", "1"))
WAIT = 5.0 * SCALE
API_KEY = "test-key-with-every-scope"


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = WAIT,
    what: str = "the condition",
    interval: float = 0.01,
) -> float:
    """Wait until ``condition()`` (a function or a coroutine function) holds; the seconds it took.

    Only for state that has no event to await: it is looked at every
    ``interval`` seconds (0: every loop turn). AssertionError naming
    ``what`` when it does not hold within ``within`` seconds.
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while True:
                held = condition()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return time.monotonic() - started
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"timed out after {within:g} s waiting for {what}") from None


#: How often a task left at a test's end is cancelled, and how long each time is waited.
LEFTOVER_CANCELS = 10
LEFTOVER_WAIT_S = 1.0


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """``asyncio.runners._cancel_all_tasks``, bounded: what a test left running is
    cancelled, and cancelled again while it lasts (a task that swallowed one
    cancellation — a library turning it into a connection error, or 3.11's
    ``wait_for`` race — would otherwise hang the whole suite at the loop's close);
    a task that outlives every attempt is named on stderr and left behind."""
    leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
    everyone = list(leftover)
    for _ in range(LEFTOVER_CANCELS):
        if not leftover:
            break
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.wait(leftover, timeout=LEFTOVER_WAIT_S))
        leftover = [task for task in leftover if not task.done()]
    for task in leftover:
        print(f"\nconftest: task still running after {LEFTOVER_CANCELS} cancels: {task!r}")
    for task in everyone:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


# pytest-asyncio closes each test's loop through asyncio.Runner, which calls this.
asyncio.runners._cancel_all_tasks = _cancel_leftover_tasks  # type: ignore[attr-defined]


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    """Every async test runs on uvloop, the loop longlink runs on in production."""
    return {"uvloop": uvloop.new_event_loop}


def node_settings(tmp_path: Any, **changes: Any) -> Settings:
    """Settings for a test node: free ports, demo mode, one all-scope API key."""
    base = Settings(
        http_port=0,
        ws_port=0,
        tcp_port=0,
        demo=True,
        api_key=API_KEY,
        ticket_secret="ticket-secret-for-the-test-suite-0123456789",
        data_dir=str(tmp_path),
        drain_timeout_s=2.0,
        # Nodes of one test share a process, so their CPU load is the process's: never
        # "full", or the endpoint order would follow the machine's noise (tests of the
        # full mark set it themselves).
        node_full=1e9,
    )
    return base.replace(**changes)


#: The end-to-end modules whose ``bus`` tests also run on the 3-primary Redis Cluster:
#: a representative subset (pushes of every kind, guaranteed delivery and a real
#: ``longlink serve`` killed with SIGKILL, room recovery, presence, several nodes, the
#: backend SDK). All of them pass there too (about 3.5 more minutes on 2 cores); the
#: contract suites (tests/contracts) run on the cluster in full.
CLUSTER_MODULES = {
    "test_push",
    "test_guaranteed",
    "test_guaranteed_restart",
    "test_recovery",
    "test_presence",
    "test_nodes",
    "test_client",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``bus``: memory and Redis for every test; the cluster too in :data:`CLUSTER_MODULES`."""
    if "bus" in metafunc.fixturenames:
        buses = ["memory", "redis"]
        module = metafunc.module.__name__.rpartition(".")[2]
        if module in CLUSTER_MODULES or os.environ.get("LONGLINK_TEST_CLUSTER_ALL") == "1":
            buses.append("cluster")
        metafunc.parametrize("bus", buses, indirect=True)


@pytest.fixture
def bus(request: pytest.FixtureRequest) -> str:
    """The backend of an end-to-end test on the ``node`` fixture (:func:`pytest_generate_tests`).

    ``cluster``: the session's 3-primary Redis Cluster (``redis+cluster://``);
    ``LONGLINK_TEST_CLUSTER_ALL=1`` runs every such test on it.
    """
    if request.param == "memory":
        return "memory"
    fixture = "redis_cluster_url" if request.param == "cluster" else "redis_server_url"
    url: str = request.getfixturevalue(fixture)
    return url


async def fresh_bus(bus: str) -> None:
    """Empty the Redis behind ``bus`` (nothing to do for the memory bus)."""
    if bus != "memory":
        from longlink.bus.redis import connect

        client = connect(bus)
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def node(tmp_path: Any, bus: str) -> AsyncIterator[Node]:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus)) as running:
        yield running


@pytest.fixture
async def api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the node's API, authorised with the all-scope key."""
    async with httpx.AsyncClient(
        base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
    ) as client:
        yield client


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """The session's 3-primary Redis Cluster: a RedisClusterServers, or None (external)."""
    from tests.redis_server import redis_cluster_servers

    with redis_cluster_servers() as servers:
        yield servers


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: Any) -> str:
    """``redis+cluster://…`` of the session's cluster (``LONGLINK_TEST_REDIS_CLUSTER_URL``)."""
    if redis_cluster is None:
        return os.environ["LONGLINK_TEST_REDIS_CLUSTER_URL"]
    url: str = redis_cluster.url
    return url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A private redis-server for the session (see tests/redis_server.py)."""
    from tests.redis_server import redis_url

    with redis_url() as url:
        yield url
