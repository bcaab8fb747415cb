"""Running a worker as a child process, as the demo, the tests and the benchmarks do.

The worker is started as ``python -m ladsdin.cli worker`` (never imported here: ``stream/``
imports no command-line module) in a session of its own, configured only through ``LADSDIN_*``
environment variables rendered from a :class:`~ladsdin.stream.settings.Settings`, and stopped
by signalling its whole process group.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from ladsdin.stream.settings import Settings


def settings_env(settings: Settings, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus every set field of ``settings`` as
    ``LADSDIN_<NAME>`` (lists as JSON), plus ``extra`` verbatim."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()  # the child needs the secret itself, not its mask
        if value is not None:
            env[f"LADSDIN_{name.upper()}"] = json.dumps(list(value)) if isinstance(value, tuple) else str(value)
    env.update(extra)
    return env


def start_ladsdin(args: list[str], env: Mapping[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``ladsdin <args>`` in a new session; its output is appended to ``log`` (or inherited)."""
    out: IO[bytes] | None = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen([sys.executable, "-m", "ladsdin.cli", *args], env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT if out is not None else None, start_new_session=True)
    finally:
        if out is not None:
            out.close()  # the child holds its own descriptor


def start_worker(settings: Settings, log: Path | None = None, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``ladsdin worker`` configured by ``settings`` (and ``extra`` env vars)."""
    return start_ladsdin(["worker"], settings_env(settings, **extra), log)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """Send ``sig`` to the child's process group and wait; SIGKILL the group after ``timeout_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
