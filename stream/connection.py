"""How every Kafka client of the product connects: the bootstrap servers and the security settings.

One :class:`KafkaConnection` is built from the settings (:meth:`Settings.kafka`) and handed to
every client: faust (the worker), the kafka-python producers (outbox, DLQ, ``publish``,
``ingest``), the consumers (reconciliation, ``alerts``, the topic readers) and the admin clients
(topic creation, ``/ready``). Functions that take a connection also take a plain
``"host:port"`` string, which means PLAINTEXT (the embedded broker and the tests).

The password is a :class:`pydantic.SecretStr`: ``str()`` and ``repr()`` of a connection show
the servers and the protocol only, so a connection can be logged.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from ladsdin.state.redaction import register_secret

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and security of one Kafka cluster.

    Args:
        bootstrap: ``host:port[,host:port]``.
        security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
        sasl_mechanism, sasl_username, sasl_password: for the SASL protocols.
        ssl_cafile: CA bundle that signed the brokers' certificates (SSL, SASL_SSL); unset = the
            system's trust store.
        ssl_certfile, ssl_keyfile: the client's certificate and key (mutual TLS).
    """

    bootstrap: str
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ValueError("Kafka bootstrap servers are empty: set LADSDIN_KAFKA_BOOTSTRAP")
        if self.sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password is not None):
            raise ValueError(f"LADSDIN_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs LADSDIN_KAFKA_SASL_MECHANISM, "
                             "LADSDIN_KAFKA_SASL_USERNAME and LADSDIN_KAFKA_SASL_PASSWORD")
        register_secret(self._password())  # kafka-python logs its config at DEBUG
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("LADSDIN_KAFKA_SSL_CERTFILE and LADSDIN_KAFKA_SSL_KEYFILE go together (mutual TLS)")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def __str__(self) -> str:
        return self.bootstrap if self.security_protocol == "PLAINTEXT" else f"{self.bootstrap} ({self.security_protocol})"

    def __repr__(self) -> str:
        return f"KafkaConnection({self.bootstrap!r}, {self.security_protocol}{', ' + self.sasl_mechanism if self.sasl else ''})"

    def _password(self) -> str | None:
        return self.sasl_password.get_secret_value() if self.sasl_password is not None else None

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of every kafka-python client (producer, consumer, admin)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.sasl:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username, sasl_plain_password=self._password())
        if self.tls:
            kw.update(ssl_check_hostname=True, ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        return kw

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the brokers (and presents the client's certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return ctx

    def faust(self) -> dict[str, Any]:
        """Keyword arguments of ``faust.App``: the broker URL and, when secured, ``broker_credentials``."""
        import faust

        kw: dict[str, Any] = {"broker": [f"kafka://{h.strip()}" for h in self.bootstrap.split(",") if h.strip()]}
        if self.sasl:
            kw["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username, password=self._password(),
                mechanism=self.sasl_mechanism, ssl_context=self.ssl_context() if self.tls else None)
        elif self.tls:
            kw["broker_credentials"] = faust.SSLCredentials(self.ssl_context())
        return kw


def as_connection(kafka: str | KafkaConnection) -> KafkaConnection:
    """A connection from a connection or a plain ``host:port`` string (PLAINTEXT)."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


def client_kwargs(kafka: str | KafkaConnection) -> dict[str, Any]:
    """kafka-python keyword arguments (servers and security) of a connection or a bootstrap string."""
    return as_connection(kafka).kafka_python()
