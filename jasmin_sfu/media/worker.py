"""The media worker: one process, one core, many routers (one per show)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from . import aiortc_adapter as adapter
from . import fastpath
from .errors import InvalidStateError
from .negotiation_gate import NegotiationGate
from .router import Router
from .adaptation_policy import AdaptationPolicy
from .sender_report_timer import SenderReportTimer
from .settings import MediaSettings
from .stats import MediaStats

log = logging.getLogger(__name__)


class Worker:
    """Owns the routers of this process and the shared media counters."""

    def __init__(
        self,
        settings: MediaSettings,
        clock: Callable[[], float] = time.monotonic,
        adaptation: AdaptationPolicy | None = None,
    ) -> None:
        """``adaptation`` replaces the policy ``settings`` derive from its keys (tests use faster numbers)."""
        adapter.self_check()
        # The C fan-out is optional (the Python path forwards the same bytes),
        # but a node without it serves far fewer viewers: say so once, loudly.
        self.fastpath_unavailable = fastpath.unavailable_reason
        if self.fastpath_unavailable is not None:
            log.warning("C fast path unavailable, forwarding in Python: %s", self.fastpath_unavailable)
        adapter.restrict_host_addresses(settings.listen_ips, settings.port_range)
        self.stats = MediaStats()
        # Binds now: a taken media.rtc_udp_port, or a range without a free port, stops the
        # daemon at start (OSError). None: a socket per peer connection (rtc_socket_per_peer).
        self.shared_ports: adapter.SharedPorts | None = None
        if settings.rtc_udp_port:
            self.shared_ports = adapter.open_shared_ports(settings.listen_ips, settings.rtc_udp_port, self.stats.drop)
        elif settings.shared_udp_port:
            self.shared_ports = adapter.open_shared_ports_in_range(
                settings.listen_ips, settings.port_range, self.stats.drop
            )
        if self.shared_ports is not None:
            log.info(
                "media: every peer connection of this worker on UDP port %d (%s)",
                self.shared_ports.port,
                ", ".join(settings.listen_ips),
            )
        else:
            log.info(
                "media: a UDP socket per peer connection, in ports %s (media.rtc_socket_per_peer)",
                "%d..%d" % settings.port_range if settings.port_range != (0, 0) else "the kernel chooses",
            )
        adapter.tolerant_consent()
        adapter.rsa_dtls_peers()
        adapter.lazy_receiver_estimators()
        self.codecs_created = adapter.count_codec_creation()
        self.settings = settings
        self.adaptation = adaptation if adaptation is not None else settings.adaptation
        self.clock = clock
        # RTCP SRs to every viewer of the worker's routers, from one timer (not a task per sender).
        self.sender_reports = SenderReportTimer(self.stats, clock)
        self.routers: dict[str, Router] = {}
        # One loop, one gate: a storm on one show and joins to another take turns too.
        self.gate = NegotiationGate(settings.negotiations_at_once)
        self.closed = False

    def create_router(self, router_id: str, app_data: dict[str, Any] | None = None) -> Router:
        if self.closed:
            raise InvalidStateError("worker is closed")
        if router_id in self.routers:
            raise InvalidStateError(f"router {router_id} exists")
        r = Router(
            router_id,
            self,
            self.settings,
            self.stats,
            self.clock,
            app_data,
            self.adaptation,
            gate=self.gate,
            sender_reports=self.sender_reports,
            shared_ports=self.shared_ports,
        )
        self.routers[router_id] = r
        return r

    def udp_ports(self) -> dict[str, Any]:
        """The worker's ICE sockets as bound, for /readyz: the shared port and its addresses,
        or the range each peer connection's own socket is taken from."""
        if self.shared_ports is not None:
            return {
                "sockets": "shared",
                "port": self.shared_ports.port,
                "listen": [f"{s.address}:{s.port}" for s in self.shared_ports.ports],
            }
        return {"sockets": "per_peer", "port_range": list(self.settings.port_range)}

    def get_or_create_router(self, router_id: str, app_data: dict[str, Any] | None = None) -> Router:
        r = self.routers.get(router_id)
        return r if r is not None else self.create_router(router_id, app_data)

    def on_router_closed(self, r: Router) -> None:
        """RouterListener: a router closed; forget it."""
        self.routers.pop(r.id, None)

    def counts(self) -> dict[str, int]:
        return {
            "routers": len(self.routers),
            "transports": sum(len(r.transports) for r in self.routers.values()),
            "producers": sum(len(r.producers) for r in self.routers.values()),
            "consumers": sum(len(r.consumers) for r in self.routers.values()),
        }

    def viewers_per_layer(self) -> dict[str, int]:
        """Video consumers of simulcast producers by the spatial layer they get ("0" the
        lowest; "paused": none, for any reason), for /metrics; read at scrape time."""
        out: dict[str, int] = {}
        for r in self.routers.values():
            for c in r.consumers.values():
                if c.kind == "video" and c.producer.simulcast:
                    cur = c.current_layer
                    key = "paused" if cur is None else str(cur.spatial)
                    out[key] = out.get(key, 0) + 1
        return out

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(r.close() for r in list(self.routers.values())), return_exceptions=True)
        self.sender_reports.close()
        if self.shared_ports is not None:
            self.shared_ports.close()  # its connections closed with the routers
