"""Redis restarts (issue 14, failure 5): 503 while it is away, nothing accepted afterwards lost.

A deployment of separate processes (api+control, a gateway, a dispatch
worker) on a private redis-server, restarted again and again, with AOF (the
data comes back) and without persistence (it comes back empty). A client
stays connected throughout. After each restart every push answered 202 —
plain and guaranteed — must reach the client; while Redis is away, every
endpoint that needs it answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from longlink.client import Client
from tests.conftest import API_KEY, WAIT
from tests.e2e.cluster import Cluster
from tests.redis_server import RedisServer, require_redis

pytestmark = pytest.mark.redis
RESTARTS = 4


@pytest.fixture(params=["aof", "empty"])
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    require_redis()
    deployment = Cluster(tmp_path)
    deployment.redis = RedisServer(str(tmp_path), appendonly=request.param == "aof")
    async with deployment as running:
        await running.start("api", "api,control")
        await running.start("g1", "gateway")
        await running.start("d1", "dispatch")
        yield running


async def test_every_push_accepted_after_a_restart_is_delivered(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    headers = {"Authorization": f"Bearer {API_KEY}"}
    accepted: list[int] = []
    index: dict[int, int] = {}
    refused: dict[int, int] = {}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT) as http,
        Client(url, user="alice", backoff_max_s=0.5) as alice,
    ):
        for restart in range(RESTARTS):
            cluster.redis.stop(kill=True)
            # Away: every endpoint that needs Redis says 503 with Retry-After, none 500.
            for method, path, body in (
                ("POST", "/v1/push", {"to": {"users": ["alice"]}, "data": "x"}),
                ("POST", "/v1/connect", {"user": "bob"}),
                ("GET", "/v1/online", None),
                ("GET", "/v1/users/alice", None),
                ("GET", "/v1/nodes", None),
            ):
                answer = await http.request(method, path, json=body)
                assert answer.status_code == 503, (path, answer.status_code, answer.text)
                assert answer.headers["retry-after"], path
            cluster.redis.start()
            # Back: push at once and keep pushing; whatever got 202 must arrive.
            deadline = asyncio.get_running_loop().time() + WAIT * 3
            n = 0
            while len(accepted) < 20:
                assert asyncio.get_running_loop().time() < deadline, "no push accepted"
                n += 1
                guaranteed = n % 2 == 1
                body = {"to": {"users": ["alice"]}, "data": [restart, n], "guaranteed": guaranteed}
                answer = await http.post("/v1/push", json=body)
                if answer.status_code == 202:
                    accepted.append(int(answer.json()["msg_id"]))
                    index[accepted[-1]] = n
                else:
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["retry-after"]
                    refused[answer.status_code] = refused.get(answer.status_code, 0) + 1
                await asyncio.sleep(0.05)
            want = set(accepted)
            got: set[int] = set()
            try:
                while not want <= got:
                    got.add((await alice.next_message(timeout=WAIT * 2)).msg_id)
            except TimeoutError:
                missing = sorted(want - got)
                logs = "".join(
                    f"\n--- {name}:\n" + "\n".join(
                        line[:200] for line in cluster.log(name).splitlines()
                        if not line.startswith((" ", "Traceback"))
                    )[-2500:]
                    for name in ("api", "g1", "d1")
                )  # fmt: skip
                raise AssertionError(
                    f"restart {restart}: {len(missing)} of {len(want)} accepted pushes lost"
                    f" (pushes {[index[m] for m in missing]}){logs}"
                ) from None
            accepted.clear()
    print(f"\n503s while rebuilding: {refused}")
