"""Build the Grafana dashboards as code: ``python dashboards/build.py [--check]``.

Writes ``dashboards/operations.json`` and ``dashboards/science.json`` with the
grafana-foundation-sdk builders (types of Grafana 11.6, the image in ``docker/compose.yaml``).
``--check`` rebuilds in memory and exits 1 if a committed file differs (the test suite does the
same). Each file is written as its own round trip through the SDK's typed model, so a key
Grafana's schema does not know cannot hide in the committed JSON.

Every PromQL expression here names metrics of ``stream/metrics.py`` (or ``up`` and the process
collector's); ``tests/observability`` checks that, and runs every expression against a real
Prometheus scraping a worker. Variables: ``$frame`` (label_values of the C_k gauge) and
Grafana's ``$__rate_interval``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery as Query
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.table import Panel as Table
from grafana_foundation_sdk.builders.text import Panel as Text
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.common import GraphDrawStyle
from grafana_foundation_sdk.models.dashboard import (DashboardCursorSync, DataSourceRef, DataTransformerConfig, DynamicConfigValue,
                                                     GridPos, VariableRefresh, VariableSort)
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

HERE = Path(__file__).resolve().parent
#: The provisioned Prometheus data source (provisioning/datasources/prometheus.yaml).
DS = DataSourceRef(type_val="prometheus", uid="ladsdin-prometheus")
JOB = 'job="ladsdin-worker"'
F = 'frame=~"$frame"'


class Layout:
    """Places panels left to right in rows of 24 columns, assigning ids."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, panel: Any, w: int, h: int = 8) -> Any:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel.id(self.next_id).grid_pos(GridPos(h=h, w=w, x=self.x, y=self.y))
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def row(self, title: str) -> Row:
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        row = Row(title).id(self.next_id).grid_pos(GridPos(h=1, w=24, x=0, y=self.y))
        self.next_id += 1
        self.y += 1
        return row


def q(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False) -> Query:
    """A Prometheus target."""
    t = Query().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        t = t.legend_format(legend)
    if instant:
        t = t.instant()
    if table:
        from grafana_foundation_sdk.models.prometheus import PromQueryFormat

        t = t.format(PromQueryFormat.TABLE)
    return t


def ts(title: str, desc: str, unit: str, *targets: Query) -> Timeseries:
    p = Timeseries().title(title).description(desc).datasource(DS).unit(unit)
    for t in targets:
        p = p.with_target(t)
    return p


def stat(title: str, desc: str, unit: str, *targets: Query) -> Stat:
    p = Stat().title(title).description(desc).datasource(DS).unit(unit)
    for t in targets:
        p = p.with_target(t)
    return p


def frame_variable() -> QueryVariable:
    return (QueryVariable("frame").label("frame").datasource(DS).query("label_values(ladsdin_epoch_anomalous_pixels, frame)")
            .multi(True).include_all(True).all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC))


def operations() -> Dashboard:
    """Is data flowing, how late, what went to the DLQ, is a worker stuck."""
    L = Layout()
    d = (Dashboard("LADSDIn-stream / Operations").uid("ladsdin-operations").tags(["ladsdin", "operations"])
         .description("Workers, epoch flow, DLQ, stage and alert latency, models and state of the streaming detector.")
         .refresh("30s").time("now-6h", "now").tooltip(DashboardCursorSync.CROSSHAIR).with_variable(frame_variable()))
    d = d.with_row(L.row("Workers"))
    for panel, w in (
        (stat("Workers up", "Workers Prometheus scrapes successfully.", "none", q(f"sum(up{{{JOB}}})", instant=True)), 4),
        (stat("Workers ready", "Workers answering /ready: started, Redis PING and a Kafka metadata request OK.", "none",
              q(f"sum(ladsdin_worker_ready{{{JOB}}})", instant=True)), 4),
        (stat("Kafka / Redis reachable", "Worst last connectivity check across workers (1 = OK).", "none",
              q("min by (dependency) (ladsdin_dependency_up)", "{{dependency}}", instant=True)), 6),
        (stat("Outbox backlog", "Messages committed with their epoch and not yet acknowledged by Kafka.", "none",
              q("max(ladsdin_outbox_backlog_messages)", instant=True)), 4),
        (stat("Frames tracked", "Frames the workers have seen, by phase (buffering history or scoring).", "none",
              q("sum by (phase) (ladsdin_frames_tracked)", "{{phase}}", instant=True)), 6),
        (ts("Seconds in the current event", "0 when idle. A long bootstrap is normal; hours mean a stuck worker.", "s",
            q("ladsdin_events_in_progress * (time() - ladsdin_event_started_timestamp_seconds)", "{{instance}}")), 12),
        (ts("Seconds since the last processed event", "Per worker.", "s",
            q("time() - ladsdin_last_event_processed_timestamp_seconds", "{{instance}}")), 12),
    ):
        d = d.with_panel(L.place(panel, w))
    d = d.with_row(L.row("Epoch flow"))
    for panel, w in (
        (ts("Events by outcome", "Events processed per second: scored, buffered (new frame), bootstrapped, duplicate, rejected.", "ops",
            q("sum by (status) (rate(ladsdin_epochs_processed_total[$__rate_interval]))", "{{status}}")), 12),
        (ts("Consumed and scored", "Events read from licsar.epochs.v1 and epochs scored, per second.", "ops",
            q("sum(rate(ladsdin_epochs_consumed_total[$__rate_interval]))", "consumed"),
            q(f"sum by (frame) (rate(ladsdin_epochs_scored_total{{{F}}}[$__rate_interval]))", "scored {{frame}}", "B")), 12),
        (ts("DLQ by reason", "Events sent to licsar.epochs.v1.dlq per second, by machine-readable reason.", "ops",
            q("sum by (reason) (rate(ladsdin_epochs_rejected_total[$__rate_interval]))", "{{reason}}")), 12),
        (ts("Messages published", "Messages acknowledged by Kafka per second, by topic (alerts, summaries, DLQ).", "ops",
            q("sum by (topic) (rate(ladsdin_outbox_messages_published_total[$__rate_interval]))", "{{topic}}")), 12),
    ):
        d = d.with_panel(L.place(panel, w))
    d = d.with_panel(L.place(
        Table().title("DLQ records since worker start").description("Rejected events by reason (counters reset when a worker restarts).")
        .datasource(DS).with_target(q("sum by (reason) (ladsdin_epochs_rejected_total)", instant=True, table=True)), 24, 7))
    d = d.with_row(L.row("Latency"))
    for panel, w in (
        (ts("Stage latency p99", "fetch, model_load, state_load, predict, cluster, state_write, publish (stream/metrics.py).", "s",
            q("histogram_quantile(0.99, sum by (le, stage) (rate(ladsdin_stage_duration_seconds_bucket[$__rate_interval])))", "{{stage}}")), 12),
        (ts("Stage latency mean", "Mean seconds per stage.", "s",
            q("sum by (stage) (rate(ladsdin_stage_duration_seconds_sum[$__rate_interval])) / "
              "sum by (stage) (rate(ladsdin_stage_duration_seconds_count[$__rate_interval]))", "{{stage}}")), 12),
        (ts("publish -> alert latency", "Event produced_at to its summary and alerts committed (the summary's latency_s). Target p99 <= 5 s.", "s",
            q("histogram_quantile(0.5, sum by (le) (rate(ladsdin_publish_to_alert_seconds_bucket[$__rate_interval])))", "p50"),
            q("histogram_quantile(0.99, sum by (le) (rate(ladsdin_publish_to_alert_seconds_bucket[$__rate_interval])))", "p99", "B")), 12),
        (ts("Data age", "Now minus the acquisition date of the frame's last scored epoch (LiCSAR products lag acquisitions by days).", "s",
            q(f"time() - max by (frame) (ladsdin_last_scored_epoch_timestamp_seconds{{{F}}})", "{{frame}}")), 12),
        (ts("Silence / revisit", "Time since the frame's last event over its revisit; the LadsdinFrameSilent alert fires at 2.", "none",
            q(f"(time() - max by (frame) (ladsdin_frame_last_event_timestamp_seconds{{{F}}})) / "
              f"max by (frame) (ladsdin_frame_revisit_seconds{{{F}}})", "{{frame}}")), 24),
    ):
        d = d.with_panel(L.place(panel, w))
    d = d.with_row(L.row("Models and state"))
    for panel, w in (
        (stat("Model bootstraps", "Frame models trained since the workers started.", "none",
              q("sum(ladsdin_model_bootstraps_total)", instant=True)), 4),
        (stat("Mean bootstrap duration", "Seconds to train a frame's model.", "s",
              q("sum(ladsdin_model_bootstrap_duration_seconds_sum) / sum(ladsdin_model_bootstrap_duration_seconds_count)", instant=True)), 4),
        (ts("Buffered epochs", "Epochs a new frame holds until LADSDIN_MIN_HISTORY_EPOCHS.", "none",
            q(f"max by (frame) (ladsdin_frame_buffered_epochs{{{F}}})", "{{frame}}")), 8),
        (ts("State bytes", "The frame's pixel-state blob in Redis.", "bytes",
            q(f"max by (frame) (ladsdin_frame_state_bytes{{{F}}})", "{{frame}}")), 8),
        (ts("Worker memory", "Resident set size per worker.", "bytes", q(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")), 12),
        (ts("Worker CPU", "CPU seconds per second per worker.", "percentunit",
            q(f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "{{instance}}")), 12),
        (stat("Epochs re-applied (Redis behind Kafka)", "Re-read events the store had lost after Kafka committed them (an AOF everysec "
              "restart, an asynchronous failover), applied again by the reconciliation after a start or rebalance.", "none",
              q("sum(ladsdin_reconcile_recovered_events_total)", instant=True)), 12),
        (stat("Failed bootstraps (parked frames)", "Bootstraps that failed on the frame's data; `ladsdin frames` lists the parked frames.",
              "none", q("sum(ladsdin_model_bootstrap_failures_total) or vector(0)", instant=True)), 12),
    ):
        d = d.with_panel(L.place(panel, w))
    return d


def science() -> Dashboard:
    """C_k against N_a, alerts and the largest object, per frame."""
    L = Layout()
    d = (Dashboard("LADSDIn-stream / Science").uid("ladsdin-science").tags(["ladsdin", "science"])
         .description("Per frame: anomalous pixels C_k against N_a (eq. 4-5), alerts and the largest anomaly object. "
                      "LOS mm, positive towards the satellite.")
         .refresh("1m").time("now-30d", "now").tooltip(DashboardCursorSync.CROSSHAIR).with_variable(frame_variable()))
    d = d.with_panel(L.place(Text().title("Reading these panels").content(
        "Prometheus plots **scrape time**, not acquisition time: each series holds the value of the frame's last scored epoch. "
        "The epoch itself is in *Last scored / alerted epoch*. Per-epoch series by acquisition date are on the "
        "`ladsdin.epoch-summaries.v1` topic (and `ladsdin detect`'s summary.json)."), 24, 3))
    ck = (ts("Anomalous pixels C_k and N_a", "C_k = pixels with |D - P| > N_m sigma (eq. 4); an epoch is examined when C_k >= N_a (eq. 5).",
             "none",
             q(f"max by (frame) (ladsdin_epoch_anomalous_pixels{{{F}}})", "C_k {{frame}}"),
             q(f"max by (frame) (ladsdin_epoch_n_a_pixels{{{F}}})", "N_a {{frame}}", "B"))
          .override_by_query("B", [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]))
    d = d.with_panel(L.place(ck, 24, 9))
    for panel, w in (
        (ts("Largest anomaly object", "Area of the largest connected anomaly object of the last scored epoch (pixels x A_p).", "areaM2",
            q(f"max by (frame) (ladsdin_epoch_largest_object_area_square_meters{{{F}}})", "{{frame}}")), 12),
        (ts("Largest object, pixels", "Objects with more than N_a pixels are seismic deformation (spatial screen).", "none",
            q(f"max by (frame) (ladsdin_epoch_largest_object_pixels{{{F}}})", "largest {{frame}}"),
            q(f"max by (frame) (ladsdin_epoch_n_a_pixels{{{F}}})", "N_a {{frame}}", "B")), 12),
        (ts("Alerts emitted", "Seismic-object alerts committed for ladsdin.alerts.v1, per scrape interval.", "none",
            q(f"sum by (frame) (increase(ladsdin_alerts_emitted_total{{{F}}}[$__rate_interval]))", "{{frame}}"))
         .draw_style(GraphDrawStyle.BARS), 12),
        (ts("Valid pixels", "Modelled pixels with data in the last scored epoch (gaps and masks lower it).", "none",
            q(f"max by (frame) (ladsdin_epoch_valid_pixels{{{F}}})", "{{frame}}")), 12),
    ):
        d = d.with_panel(L.place(panel, w))
    epochs = (Table().title("Last scored / alerted epoch").description("Acquisition dates (UTC) and alert counts per frame.")
              .datasource(DS)
              .with_target(q(f"max by (frame) (ladsdin_last_scored_epoch_timestamp_seconds{{{F}}}) * 1000", ref="A", instant=True, table=True))
              .with_target(q(f"max by (frame) (ladsdin_last_alert_epoch_timestamp_seconds{{{F}}}) * 1000", ref="B", instant=True, table=True))
              .with_target(q(f"sum by (frame) (ladsdin_alerts_emitted_total{{{F}}})", ref="C", instant=True, table=True))
              .with_transformation(DataTransformerConfig(id_val="merge", options={}))
              .with_transformation(DataTransformerConfig(id_val="organize", options={
                  "excludeByName": {"Time": True},
                  "renameByName": {"Value #A": "last scored epoch", "Value #B": "last alert epoch", "Value #C": "alerts"}}))
              .override_by_name("last scored epoch", [DynamicConfigValue(id_val="unit", value="dateTimeAsIsoNoDateIfToday")])
              .override_by_name("last alert epoch", [DynamicConfigValue(id_val="unit", value="dateTimeAsIsoNoDateIfToday")]))
    d = d.with_panel(L.place(epochs, 16, 8))
    d = d.with_panel(L.place(stat("Epoch of the last alert", "Acquisition date of the newest alerted epoch.", "dateTimeAsIso",
                                  q(f"max by (frame) (ladsdin_last_alert_epoch_timestamp_seconds{{{F}}}) * 1000", "{{frame}}", instant=True)), 8, 8))
    return d


def render(builder: Dashboard) -> dict[str, Any]:
    """The dashboard as JSON, normalised by a round trip through the SDK's typed model."""
    register_default_plugins()
    first = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    return json.loads(JSONEncoder(sort_keys=True).encode(DashboardModel.from_json(first)))


DASHBOARDS = {"operations.json": operations, "science.json": science}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard differs from the code")
    args = ap.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(render(build()), indent=2, sort_keys=True) + "\n"
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.stderr.write(f"stale dashboards {stale}: run `python dashboards/build.py`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
