"""The edges (``ladsdin.stream``): command line, settings, readers, output writers and plots."""
from __future__ import annotations
