"""Prometheus export of the media counters, read at scrape time."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jasmin_sfu import __version__
from jasmin_sfu.api.admission import REASONS, Admission
from jasmin_sfu.loop_lag import LagHistogram
from jasmin_sfu.media.worker import Worker
from jasmin_sfu.api.relay import Relays
from jasmin_sfu.services.cluster import DECISIONS, ClusterNode
from jasmin_sfu.services.redis_windows import RedisWindows


class MediaCollector(Collector):
    """Reads plain integers the hot path keeps; no per-packet prometheus calls."""

    def __init__(self, worker: Worker, sessions: Callable[[], int]) -> None:
        self.worker = worker
        self.sessions = sessions

    def collect(self) -> Iterable[Metric]:
        w = self.worker
        s = w.stats
        counts = w.counts()
        yield GaugeMetricFamily("jasmin_shows", "Shows (routers) on this node", value=counts["routers"])
        yield GaugeMetricFamily("jasmin_transports", "WebRTC transports", value=counts["transports"])
        yield GaugeMetricFamily("jasmin_producers", "Published tracks", value=counts["producers"])
        yield GaugeMetricFamily("jasmin_consumers", "Viewer copies of tracks", value=counts["consumers"])
        yield GaugeMetricFamily("jasmin_signaling_sessions", "Open signaling websockets", value=self.sessions())
        simple: list[tuple[str, str, int]] = [
            ("jasmin_rtp_packets_in", "RTP packets received from publishers", s.rtp_packets_in),
            ("jasmin_rtp_bytes_in", "RTP bytes received from publishers", s.rtp_bytes_in),
            ("jasmin_rtp_packets_out", "RTP packets sent to viewers (incl. retransmissions)", s.rtp_packets_out),
            ("jasmin_rtp_bytes_out", "RTP bytes sent to viewers", s.rtp_bytes_out),
            ("jasmin_rtcp_packets_in", "Compound RTCP packets received", s.rtcp_packets_in),
            ("jasmin_rtcp_packets_out", "Compound RTCP packets sent by the SFU", s.rtcp_packets_out),
            (
                "jasmin_sender_reports_sent",
                "RTCP sender reports sent to viewers (one per stream)",
                s.sender_reports_sent,
            ),
            ("jasmin_nacks_received", "NACK feedback packets from viewers", s.nacks_received),
            ("jasmin_nack_packets_served", "Packets retransmitted from the cache", s.nack_packets_served),
            ("jasmin_nack_packets_missed", "NACKed packets not in the cache (asked upstream)", s.nack_packets_missed),
            (
                "jasmin_nack_packets_refused",
                "NACKed packets from before the viewer's stream began (not served)",
                s.nack_packets_refused,
            ),
            (
                "jasmin_video_congestion_pauses",
                "Viewers' video paused because their link could not carry it (audio first)",
                s.video_congestion_pauses,
            ),
            (
                "jasmin_video_congestion_probes",
                "Paused video tried again on a viewer's link",
                s.video_congestion_probes,
            ),
            (
                "jasmin_nack_keyframe_requests",
                "Keyframe requests made instead of resends past a viewer's budget",
                s.nack_keyframe_requests,
            ),
            (
                "jasmin_keyframe_packets_replayed",
                "Cached keyframe packets sent to starting viewers",
                s.keyframe_packets_replayed,
            ),
            ("jasmin_plis_received", "PLI/FIR from viewers", s.plis_received),
            ("jasmin_plis_sent", "Keyframe requests sent to publishers", s.keyframe_requests_sent),
            (
                "jasmin_keyframe_requests_coalesced",
                "Keyframe requests absorbed by the throttle",
                s.keyframe_requests_coalesced,
            ),
            (
                "jasmin_layer_switches",
                "Viewers moved from one simulcast layer to another (on the target's keyframe)",
                s.layer_switches,
            ),
            (
                "jasmin_padding_packets_sent",
                "Padding-only packets sent to viewers for bandwidth probes",
                s.padding_packets_sent,
            ),
            (
                "jasmin_simulcast_ssrcs_learned",
                "Publisher streams tied to a simulcast layer by their RID",
                s.simulcast_ssrcs_learned,
            ),
            (
                "jasmin_temporal_packets_dropped",
                "VP8 packets of frames above a viewer's temporal layer, not sent to it",
                s.temporal_packets_dropped,
            ),
            (
                "jasmin_nack_temporal_refused",
                "NACKed packets of frames a viewer's temporal layer dropped (never resent)",
                s.nack_temporal_refused,
            ),
            (
                "jasmin_aiortc_encoders_created",
                "aiortc encoders created in this process (must stay 0)",
                w.codecs_created.encoders,
            ),
            (
                "jasmin_aiortc_decoders_created",
                "aiortc decoders created in this process (must stay 0)",
                w.codecs_created.decoders,
            ),
        ]
        for name, doc, value in simple:
            yield CounterMetricFamily(name, doc, value=value)
        gate = w.gate
        yield CounterMetricFamily(
            "jasmin_negotiations",
            "SDP negotiations and keyframe replays run through the worker's negotiation gate",
            value=gate.negotiations,
        )
        yield CounterMetricFamily(
            "jasmin_negotiations_waited",
            "Negotiations that waited for another to end (media.negotiations_at_once were running)",
            value=gate.waited,
        )
        yield GaugeMetricFamily("jasmin_negotiations_running", "Negotiations running now", value=gate.running)
        yield GaugeMetricFamily(
            "jasmin_negotiations_waiting", "Negotiations waiting their turn now", value=gate.waiting
        )
        resends = CounterMetricFamily(
            "jasmin_nack_resends", "Packets resent to viewers in answer to NACKs, by the kind of track", labels=["kind"]
        )
        for kind, n in sorted(s.nack_resends.items()):
            resends.add_metric([kind], n)
        yield resends
        suppressed = CounterMetricFamily(
            "jasmin_nack_suppressed",
            "NACKed packets not resent, by rule: rtt (resent within the viewer's round trip), retries"
            " (resent nack_max_retries times), budget (past the viewer's budget), age (older than the cache"
            " or than the RTT leaves useful)",
            labels=["reason"],
        )
        for reason, n in (
            ("age", s.nack_suppressed_age),
            ("budget", s.nack_suppressed_budget),
            ("retries", s.nack_suppressed_retries),
            ("rtt", s.nack_suppressed_rtt),
        ):
            suppressed.add_metric([reason], n)
        yield suppressed
        per_layer = GaugeMetricFamily(
            "jasmin_layer_viewers",
            "Video viewers of simulcast tracks by the spatial layer they get (0 the lowest; paused: none)",
            labels=["layer"],
        )
        for layer, n in sorted(w.viewers_per_layer().items()):
            per_layer.add_metric([layer], n)
        yield per_layer
        yield CounterMetricFamily(
            "jasmin_bwe_estimates",
            "Viewer REMBs taken into a per-viewer estimate (one per viewer and RTCP interval)",
            value=s.bwe_estimates,
        )
        clamped = CounterMetricFamily(
            "jasmin_bwe_clamped",
            "Viewer REMBs not trusted as sent, by reason: low (zero or under bwe_min_bps), high (over bwe_max_bps),"
            " jump (more than bwe_max_jump from the estimate in one report)",
            labels=["reason"],
        )
        for reason, n in sorted(s.bwe_clamped.items()):
            clamped.add_metric([reason], n)
        yield clamped
        decisions = CounterMetricFamily(
            "jasmin_layer_decisions",
            "Per-viewer layer selector decisions, by kind: start, up, down, pause (below the lowest layer),"
            " resume, gone (the layer stopped or the viewer's cap went below it)",
            labels=["kind"],
        )
        for kind, n in sorted(s.layer_decisions.items()):
            decisions.add_metric([kind], n)
        yield decisions
        probes = CounterMetricFamily(
            "jasmin_layer_probes",
            "Padding probes of viewers held below their best layer, by event: start, success, fail",
            labels=["event"],
        )
        for event, n in sorted(s.layer_probes.items()):
            probes.add_metric([event], n)
        yield probes
        drops = CounterMetricFamily("jasmin_rtp_drops", "Packets dropped, by reason", labels=["reason"])
        for reason, n in sorted(s.drops.items()):
            drops.add_metric([reason], n)
        yield drops


class AdmissionCollector(Collector):
    """Admission control (jasmin_sfu/api/admission.py): refusals by reason, joins in flight."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def collect(self) -> Iterable[Metric]:
        a = self.admission
        yield GaugeMetricFamily(
            "jasmin_joins_in_flight",
            "Viewer joins admitted whose first frame has not reached the viewer",
            value=a.joins_in_flight(),
        )
        yield GaugeMetricFamily(
            "jasmin_admission_viewers", "Viewer connections joined to shows on this worker", value=a.viewers
        )
        refused = CounterMetricFamily(
            "jasmin_admission_refusals",
            "Joins refused with `overloaded`, by reason: viewers (max_viewers_per_worker), joins_in_flight, cpu",
            labels=["reason"],
        )
        for reason in REASONS:
            refused.add_metric([reason], a.refused[reason])
        yield refused


class ClusterCollector(Collector):
    """The cluster registry (docs/cluster.md): placements, redirects, heartbeats (nothing without [cluster]);
    relays (also between the workers of one supervisor)."""

    def __init__(
        self,
        cluster: Callable[[], ClusterNode | None],
        windows: RedisWindows | None = None,
        relays: Callable[[], Relays | None] = lambda: None,
    ) -> None:
        self.cluster = cluster
        self.windows = windows
        self.relays = relays

    def collect(self) -> Iterable[Metric]:
        if self.windows is not None:
            yield CounterMetricFamily(
                "jasmin_cluster_throttle_fallbacks",
                "Shared-limit operations (login throttle, chat messages) counted in this process because Redis was"
                " unreachable",
                value=self.windows.fallbacks,
            )
        yield from self._relay_families()
        c = self.cluster()
        if c is None:
            return
        s = c.stats
        placements = CounterMetricFamily(
            "jasmin_cluster_placements",
            "Joins of shows not live here, by decision: local (placed here), remote (placed on another node),"
            " held_here (its record named this node), held_elsewhere (another node holds it),"
            " edge (a viewer of another node's show served here through a relay),"
            " edge_elsewhere (this edge was full: the viewer sent to another node with room)",
            labels=["decision"],
        )
        for d in DECISIONS:
            placements.add_metric([d], s.placements[d])
        yield placements
        for name, doc, value in (
            ("jasmin_cluster_redirects", "Joins answered `moved` (sent to the node holding the show)", s.redirects),
            ("jasmin_cluster_heartbeats", "Heartbeats written to the registry", s.heartbeats),
            ("jasmin_cluster_heartbeat_failures", "Heartbeats that failed (Redis unreachable)", s.heartbeat_failures),
            ("jasmin_cluster_bad_records", "Registry records ignored: their signature did not verify", s.bad_records),
            (
                "jasmin_cluster_lost_shows",
                "Shows held here whose record another node took after it lapsed",
                s.lost_shows,
            ),
            (
                "jasmin_cluster_node_id_conflicts",
                "Heartbeats that found this node id written by a node at another URL",
                s.id_conflicts,
            ),
            (
                "jasmin_cluster_billing_id_conflicts",
                "Heartbeats that found this node's billing.node_id on another node",
                s.billing_id_conflicts,
            ),
            (
                "jasmin_cluster_unavailable_refusals",
                "Joins refused because the registry was unreachable",
                s.refused_unavailable,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "jasmin_cluster_registry_up", "1 while the last heartbeat reached the registry", value=int(c.healthy)
        )
        yield GaugeMetricFamily("jasmin_cluster_nodes", "Nodes in the registry as last read", value=len(c.nodes or []))

    def _relay_families(self) -> Iterable[Metric]:
        """Relays between nodes, or between a supervisor's workers (docs/workers.md): with or without [cluster]."""
        relays = self.relays()
        if relays is None:
            return
        n = relays.counts()
        r = relays.stats
        for name, doc, value in (
            ("jasmin_relay_streams_out", "Producers of this node's shows relayed to other nodes now", n["relays_out"]),
            ("jasmin_relay_streams_in", "Replica producers this node asks its origins to relay now", n["relays_in"]),
            (
                "jasmin_relay_replica_producers",
                "Replica producers held here (relayed shows' tracks)",
                n["replica_producers"],
            ),
            ("jasmin_relay_pipes_out", "Pipes toward edge nodes (this node the origin)", n["pipes_out"]),
            ("jasmin_relay_pipes_in", "Pipes from origin nodes (this node the edge)", n["pipes_in"]),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        members = relays.members
        if members is not None:
            for name, doc, value in (
                (
                    "jasmin_relay_member_sessions_out",
                    "Member sessions of this node's shows watching through an edge node",
                    sum(len(link.members) for link in members.links.values()),
                ),
                (
                    "jasmin_relay_member_sessions_in",
                    "Member sessions watching here, an edge, whose privates run on the show's node",
                    len(members.sessions),
                ),
            ):
                yield GaugeMetricFamily(name, doc, value=value)
            yield CounterMetricFamily(
                "jasmin_relay_member_edges_gone",
                "Edge nodes this origin found gone (silent or unreachable for ttl_s) with members watching there",
                value=members.edges_gone,
            )
        for name, doc, value in (
            ("jasmin_relay_packets_out", "Packets (RTP and RTCP) sent on relay pipes", n["packets_out"]),
            ("jasmin_relay_packets_in", "Packets received on relay pipes and authenticated", n["packets_in"]),
            (
                "jasmin_relay_dropped_unknown_address",
                "Relay datagrams dropped: not from the pipe's peer address",
                n["dropped_unknown_address"],
            ),
            ("jasmin_relay_opened_as_origin", "Relay open requests this node answered as origin", r.opened_as_origin),
            ("jasmin_relay_opened_as_edge", "Relays this node opened (or refreshed) as edge", r.opened_as_edge),
            (
                "jasmin_relay_joins_served_warm",
                "Viewer joins an edge served from a flowing relay at once",
                r.served_warm,
            ),
            ("jasmin_relay_refused", "Relay open requests refused (bad signature, replay, unknown show...)", r.refused),
            ("jasmin_relay_failures", "Relays this node could not open as edge (its viewer got `moved`)", r.failures),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class NodeCollector(Collector):
    """The build (``jasmin_build_info``, value 1, the version as a label) and the event loop's lag."""

    def __init__(self, loop_lag: LagHistogram) -> None:
        self.loop_lag = loop_lag

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("jasmin_build_info", "The running jasmin-sfu's version (value 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        h = self.loop_lag
        yield HistogramMetricFamily(
            "jasmin_event_loop_lag_seconds",
            "How late the loop-lag monitor woke up: time the event loop was blocked (jasmin_sfu/loop_lag.py)",
            buckets=[("+Inf" if b == float("inf") else repr(b), n) for b, n in h.cumulative()],
            sum_value=h.sum,
        )


def make_registry(*collectors: Any) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
