"""The one settings object (pydantic-settings, ``LADSDIN_`` env prefix), built once at the entry point."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Operator configuration. Every field can be set as ``LADSDIN_<NAME>``; CLI flags win."""

    model_config = SettingsConfigDict(env_prefix="LADSDIN_", frozen=True, extra="ignore")

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device for training and scoring")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: the process's CPU quota")
    log_level: str = Field("INFO", description="logging level")
    progress: bool = Field(True, description="show progress bars on long runs (stderr)")
