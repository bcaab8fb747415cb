"""Redis failures as the store reports them: connection-level errors become
:class:`~ladsdin.state.store.StoreUnavailable` (an infrastructure failure: the worker restarts),
with the server's URL, its password redacted, in every message."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rexc

from ladsdin.state.store import StoreUnavailable


def redact(url: str) -> str:
    """The URL without its password (it goes into error messages and logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


@contextmanager
def unavailable_as(url: str, what: str) -> Iterator[None]:
    """Map connection-level failures to :class:`StoreUnavailable` naming the server."""
    try:
        yield
    except rexc.AuthenticationError as e:  # pragma: no cover - needs a password-protected server
        # before ConnectionError, its base class in redis-py
        raise StoreUnavailable(f"Redis at {url} refused the credentials during {what}: fix the password in the URL") from e
    except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, rexc.MasterDownError, rexc.ClusterDownError, rexc.TryAgainError) as e:
        raise StoreUnavailable(
            f"Redis at {url} is unavailable during {what} ({type(e).__name__}: {e}); "
            "check that the server is running and reachable and that LADSDIN_REDIS_URL names it"
        ) from e
    except rexc.OutOfMemoryError as e:
        raise StoreUnavailable(
            f"Redis at {url} is out of memory during {what} ({e}); raise its maxmemory or free space "
            "(a frame's state is ~(2 K S + 3) * 4 bytes per pixel)"
        ) from e
