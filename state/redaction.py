"""Secrets never reach a log line: every record is scrubbed of the registered secrets.

Third-party clients log their configuration (kafka-python logs every setting, the SASL password
included, at DEBUG), so redacting our own messages is not enough. :func:`register_secret` is
called where a secret enters the process (the Kafka connection, a Redis URL with a password) and
installs, once, a log-record factory that replaces every registered secret in the formatted
message with ``***``. The factory runs only for records a logger emits, so the cost is one
formatting and a few substring searches per emitted line.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "***"
_MIN_LENGTH = 4  # shorter "secrets" would mask ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(secret: str | None) -> None:
    """Scrub ``secret`` from every log record from now on (no-op for None or very short values)."""
    global _installed
    if not secret or len(secret) < _MIN_LENGTH:
        return
    with _lock:
        _secrets.add(secret)
        if not _installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                if _secrets:
                    try:
                        msg = record.getMessage()
                    except Exception:  # noqa: BLE001 - a bad format string is logging's to report, at emit
                        return record
                    clean = scrub(msg)
                    if clean != msg:
                        record.msg, record.args = clean, None
                return record

            logging.setLogRecordFactory(factory)
            _installed = True


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first)."""
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    return text
