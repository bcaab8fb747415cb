"""The observability tests' Prometheus: the committed configuration, installing a real Prometheus
(Debian ``prometheus``) where it is missing and we are root, and metric-name helpers."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docker" / "prometheus" / "rules" / "ladsdin.rules.yml"
PROM_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
#: Series that Prometheus itself adds to every scrape.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: PromQL words that look like metric names: functions, keywords, aggregations.
_NOT_METRICS = {
    "sum", "min", "max", "avg", "count", "by", "without", "and", "or", "unless", "on", "ignoring", "group_left",
    "group_right", "bool", "rate", "irate", "increase", "deriv", "delta", "time", "absent", "histogram_quantile",
    "max_over_time", "min_over_time", "avg_over_time", "clamp_min", "clamp_max", "topk", "bottomk", "label_values",
    "offset", "le", "inf", "nan", "vector", "scalar", "abs", "sort", "predict_linear",
}


@dataclass(frozen=True)
class PrometheusTools:
    prometheus: str
    promtool: str


def install_prometheus() -> str | None:
    """apt-get install the Debian package; None on success, else why it cannot be done here."""
    if os.name != "posix" or os.geteuid() != 0:
        return "not root: install Prometheus (`apt-get install prometheus`) to run these tests"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine: put `prometheus` and `promtool` on PATH to run these tests"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    for attempt in range(2):
        log.warning("installing Prometheus: %s", " ".join(cmd))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode == 0:
            return None
        if attempt == 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
    return f"`apt-get install prometheus` failed: {done.stderr.strip()[-500:]}"


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, strings and ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals ("$frame", label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text))
    return {n for n in names if n.lower() not in _NOT_METRICS and not re.fullmatch(r"\d+(e\d+)?", n) and not n.startswith("$")}


def panel_targets(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every Prometheus target of a dashboard (rows included)."""
    out = []
    panels = list(dashboard.get("panels", []))
    while panels:
        p = panels.pop(0)
        panels.extend(p.get("panels", []))
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((p.get("title", ""), t.get("refId", ""), t["expr"]))
    return out
