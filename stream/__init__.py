"""The streaming service (``ladsdin.stream``, ``stream/``).

- :mod:`.worker`: the faust app over ``licsar.epochs.v1``; :mod:`.processor`: one event in,
  state committed, messages out; :mod:`.outbox`: messages published after their commit
- :mod:`.contracts`, :mod:`.events`, :mod:`.objects`, :mod:`.dlq`: the event schemas and
  checks, building and parsing events, data by reference, dead-letter records
- :mod:`.topics`: Kafka helpers (create topics, read a topic from its beginning)
- :mod:`.metrics`, :mod:`.telemetry`: Prometheus metrics, ``/health`` and ``/ready``
- :mod:`.settings`: the one settings object; :mod:`.embedded`: the embedded broker and Valkey;
  :mod:`.supervise`: a worker as a child process

It imports ``models`` and ``state``, never a command-line, reader or plotting module.
"""
from __future__ import annotations
