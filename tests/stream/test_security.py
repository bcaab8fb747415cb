"""Kafka security settings reach every client; secrets never show; the HTTP endpoint is bounded.

The embedded broker (tansu 0.6.0) could not be made to complete a SASL or TLS handshake with
kafka-python here (with ``--authentication`` it closes the connection before SASL starts, and
``tansu user create`` against it fails the same way; with ``--cert`` the TLS handshake never
completes), so the Kafka side is tested at the plumbing: every client factory is called and the
keyword arguments it hands kafka-python or faust are checked. Redis security runs for real: the
secrets test authenticates to a real Valkey with a password planted in the URL.
"""
from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from ladsdin.state.redis_errors import redact
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.connection import KafkaConnection, client_kwargs
from ladsdin.stream.embedded import EmbeddedRedis, free_port
from ladsdin.stream.metrics import PrometheusMetrics
from ladsdin.stream.settings import Settings
from ladsdin.stream.supervise import settings_env
from ladsdin.stream.telemetry import ReadinessProbe, TelemetryServer

KAFKA_SECRET = "kafka-PLANTED-s3cret"
REDIS_SECRET = "redis-PLANTED@pw:x"  # an "@" and a ":" in it, as real passwords have


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory) -> tuple[str, str, str]:
    """A self-signed certificate and its key (openssl), standing in for a CA and a client pair."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (Debian: apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(cert), str(key)


def _sasl_ssl(ca: str, cert: str | None = None, key: str | None = None, mech: str = "SCRAM-SHA-512") -> Settings:
    return Settings(kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mech,
                    kafka_sasl_username="ladsdin", kafka_sasl_password=KAFKA_SECRET, kafka_ssl_cafile=ca,
                    kafka_ssl_certfile=cert, kafka_ssl_keyfile=key)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_protocol_gives_kafka_python_and_faust_their_settings(protocol, mechanism, ca_files):
    ca, cert, key = ca_files
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    s = Settings(kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol=protocol,
                 kafka_sasl_mechanism=mechanism if sasl else None, kafka_sasl_username="ladsdin" if sasl else None,
                 kafka_sasl_password=KAFKA_SECRET if sasl else None, kafka_ssl_cafile=ca if tls else None,
                 kafka_ssl_certfile=cert if tls else None, kafka_ssl_keyfile=key if tls else None)
    conn = s.kafka()
    kw = conn.kafka_python()
    assert kw["bootstrap_servers"] == "k1:9093,k2:9093" and kw["security_protocol"] == protocol
    if sasl:
        assert (kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == (mechanism, "ladsdin", KAFKA_SECRET)
    else:
        assert "sasl_mechanism" not in kw
    if tls:
        assert (kw["ssl_cafile"], kw["ssl_certfile"], kw["ssl_keyfile"], kw["ssl_check_hostname"]) == (ca, cert, key, True)
    fk = conn.faust()
    assert fk["broker"] == ["kafka://k1:9093", "kafka://k2:9093"]
    cred = fk.get("broker_credentials")
    if sasl:
        assert isinstance(cred, faust.SASLCredentials)
        assert (cred.username, cred.password, cred.mechanism.value) == ("ladsdin", KAFKA_SECRET, mechanism)
        assert (cred.ssl_context is not None) == tls
    elif tls:
        assert isinstance(cred, faust.SSLCredentials) and cred.context.verify_mode.name == "CERT_REQUIRED"
    else:
        assert cred is None
    # a connection may be logged: servers and protocol only
    assert KAFKA_SECRET not in f"{conn} {conn!r} {s!r} {s}"


def test_incomplete_security_settings_fail_at_start():
    with pytest.raises(ValueError, match="LADSDIN_KAFKA_SASL_MECHANISM"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u")
    with pytest.raises(ValueError, match="go together"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_certfile="/c.pem")
    env = {"LADSDIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "LADSDIN_KAFKA_SASL_MECHANISM": "PLAIN",
           "LADSDIN_KAFKA_SASL_USERNAME": "u", "LADSDIN_KAFKA_SASL_PASSWORD": KAFKA_SECRET, "LADSDIN_KAFKA_BOOTSTRAP": "k:9092"}
    s = Settings(_env_file=None, **{k.removeprefix("LADSDIN_").lower(): v for k, v in env.items()})
    assert s.kafka().kafka_python()["sasl_plain_password"] == KAFKA_SECRET
    # a worker started by `ladsdin demo` or the tests gets the secret itself, not its mask
    assert settings_env(s, base={})["LADSDIN_KAFKA_SASL_PASSWORD"] == KAFKA_SECRET


class _Refused(Exception):
    pass


def _recorder(calls: list[tuple[str, dict]], name: str) -> type:
    class Client:
        def __init__(self, *args, **kw) -> None:
            calls.append((name, kw))
            raise _Refused(name)  # recorded; no connection is attempted

    return Client


def test_every_kafka_client_gets_the_security_settings(monkeypatch, ca_files, tmp_path):
    """The worker (faust), the producers, the consumers and the admin clients, built by the product's own code."""
    import kafka

    from ladsdin.stream import outbox
    from ladsdin.stream.reconcile import reread
    from ladsdin.stream.topics import create_topics, read_topics
    from ladsdin.stream.worker import create_app

    ca, cert, key = ca_files
    s = _sasl_ssl(ca, cert, key).model_copy(update={"data_root": tmp_path})
    conn = s.kafka()
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(kafka, "KafkaAdminClient", _recorder(calls, "admin"))
    monkeypatch.setattr(kafka, "KafkaConsumer", _recorder(calls, "consumer"))
    monkeypatch.setattr(outbox, "KafkaProducer", _recorder(calls, "producer"))
    for build in (lambda: create_topics(conn, s.topics), lambda: next(read_topics(conn, s.alerts_topic)),
                  lambda: next(reread(conn, s.epochs_topic, 0, 0, 5)), lambda: outbox.make_producer(conn, s.max_message_bytes)):
        with pytest.raises(_Refused):
            build()
    probe = ReadinessProbe(conn, s.epochs_topic, lambda: None, PrometheusMetrics(list(s.topics[1:])))
    assert "Kafka metadata request" in probe._check_kafka()  # the refused admin client is reported, not raised
    assert [n for n, _ in calls] == ["admin", "consumer", "consumer", "producer", "admin"]
    want = client_kwargs(conn)
    for name, kw in calls:
        assert {k: kw.get(k) for k in want} == want, name
    assert want["sasl_plain_password"] == KAFKA_SECRET and want["ssl_cafile"] == ca
    app = create_app(s, conn, "redis://127.0.0.1:1/0")
    cred = app.conf.broker_credentials
    assert isinstance(cred, faust.SASLCredentials) and (cred.username, cred.password) == ("ladsdin", KAFKA_SECRET)
    assert [str(u) for u in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]


@pytest.mark.parametrize("url,secret", [
    ("redis://:p@ss@host:6379/0", "p@ss"),
    ("redis://user:s3cr3t@h:1/0?password=abc&db=1", "s3cr3t"),
    ("redis://h:6379/0?password=x@y", "x@y"),
    ("rediss://lonely-secret@h:6380/0", "lonely-secret"),
    ("unix:///tmp/r.sock?password=zz&db=2", "zz"),
])
def test_redact_removes_every_form_of_redis_password(url, secret):
    out = redact(url)
    assert secret not in out and "***" in out
    assert out.split("://")[0] == url.split("://")[0] and ("h:" in out or "host:" in out or "r.sock" in out)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_planted_secrets_never_appear_in_logs_ready_or_metrics(caplog, ca_files):
    """A real Valkey with a password; a SASL_SSL Kafka connection that cannot be reached."""
    ca, _, _ = ca_files
    caplog.set_level(logging.DEBUG)
    with EmbeddedRedis() as r:
        RedisStateStore(r.url)._r.config_set("requirepass", REDIS_SECRET)
        host_port = r.url.split("//")[1].split("/")[0]
        good = RedisStateStore(f"redis://:{REDIS_SECRET}@{host_port}/0")
        good.ping()  # the planted password authenticates for real
        bad = RedisStateStore(f"redis://:{REDIS_SECRET}-wrong@{host_port}/0?password={REDIS_SECRET}")
        s = _sasl_ssl(ca).model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "redis_url": good.url})
        m = PrometheusMetrics(list(s.topics[1:]))
        outputs = [repr(s), str(s), repr(good), repr(bad), s.model_dump_json()]
        for store in (good, bad):
            probe = ReadinessProbe(s.kafka(), s.epochs_topic, store.ping, m, timeout_s=1.0, min_interval_s=0.0)
            probe.mark_started()
            srv = TelemetryServer("127.0.0.1", 0, m, probe).start()
            try:
                code, body = _get(srv.port, "/ready")
                assert code == 503 and json.loads(body)["checks"]["kafka"] != "ok"
                outputs += [body, _get(srv.port, "/metrics")[1], _get(srv.port, "/health")[1]]
            finally:
                srv.stop()
        assert "refused the credentials" in outputs[-3] or "AuthenticationError" in outputs[-3] or "Redis" in outputs[-3]
        try:
            bad.ping()
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            outputs.append(f"{exc!r} {exc}")
    outputs.append(caplog.text)
    text = "\n".join(outputs)
    assert "127.0.0.1" in text  # the outputs were really captured
    for secret in (KAFKA_SECRET, REDIS_SECRET, REDIS_SECRET.split("@")[0], REDIS_SECRET.split("@")[1]):
        assert secret not in text, f"{secret!r} leaked"


def test_metrics_endpoint_binds_loopback_drops_silent_clients_and_caps_threads():
    assert Settings().metrics_host == "127.0.0.1"
    m = PrometheusMetrics(["a"])
    probe = ReadinessProbe("127.0.0.1:1", "t", lambda: None, m)
    srv = TelemetryServer("127.0.0.1", 0, m, probe, request_timeout_s=0.5, max_threads=1).start()
    try:
        silent = socket.create_connection(("127.0.0.1", srv.port))  # takes the only slot and sends nothing
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        try:
            assert extra.recv(100) == b""  # closed at once: over the thread cap
        except ConnectionResetError:
            pass
        assert srv._httpd.refused >= 1
        silent.settimeout(5)
        t0 = time.monotonic()
        assert silent.recv(100) == b""  # dropped after the request timeout
        assert time.monotonic() - t0 < 3
        time.sleep(0.1)
        assert _get(srv.port, "/health")[0] == 200  # the slot is free again
    finally:
        srv.stop()


def test_readme_documents_the_security_settings():
    text = (Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md").read_text()
    for name in Settings.model_fields:
        if name.startswith(("kafka_s", "metrics_")) and name != "metrics_enabled":
            assert f"LADSDIN_{name.upper()}" in text, name


def test_a_dlq_detail_never_carries_a_registered_secret():
    from ladsdin.stream.dlq import dlq_record

    KafkaConnection("k:9092", "SASL_PLAINTEXT", "PLAIN", "u", SecretStr(KAFKA_SECRET))  # registers the secret
    rec = dlq_record(b"{}", "invalid_json", f"failed on sasl_plain_password={KAFKA_SECRET}", "t", 0, 1)
    assert KAFKA_SECRET not in json.dumps(rec) and "***" in rec["detail"]


def test_the_log_scrubber_masks_secrets_and_survives_bad_format_strings(caplog):
    from ladsdin.state.redaction import register_secret

    register_secret(KAFKA_SECRET)
    caplog.set_level(logging.INFO)
    log = logging.getLogger("some.client")
    log.info("config: %s", {"sasl_plain_password": KAFKA_SECRET})
    assert "config:" in caplog.text and KAFKA_SECRET not in caplog.text
    # a bad format string is logging's to report when the record is emitted: making the record must not raise
    rec = logging.getLogRecordFactory()("some.client", logging.INFO, __file__, 1, "two placeholders %s %s", ("one",), None)
    assert rec.args == ("one",)
