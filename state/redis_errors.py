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
    """The URL without its secrets (it goes into error messages, logs and ``/ready``).

    The whole user-info part is replaced (``redis://user:p@ss@host`` has its password up to the
    *last* ``@`` before the host; a lone ``redis://secret@host`` is a password to some servers),
    and so is the value of every ``password=``-like query parameter.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    q = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    at = rest.rfind("@", 0, q)  # the user-info ends at the last "@" before the query
    slash = rest.find("/", at + 1, q)
    netloc_end = slash if slash != -1 else q
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        name = user.split(":", 1)[0] if ":" in user else ""
        netloc = f"{name}:***@{host}"
    tail = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", tail)
    return f"{scheme}://{netloc}{tail}"


_SECRET_QUERY = re.compile(r"((?:^|[?&;])[^=&;#]*(?:password|passwd|secret|token|key)[^=&;#]*)=[^&;#]*", re.IGNORECASE)


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
