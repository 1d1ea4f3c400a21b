"""Online notifications: which signaling sessions belong to which member, and the RSS document.

``OnlineNotifier`` is the seam between the social service (which knows who
favourited whom) and the websocket layer (which knows the live connections):
a signaling session of a member registers a send function (``attach``), the
service calls ``notify``. It holds only callables, so services never import
the api package. One process: an in-memory map; several processes each notify
their own sessions (every node sees its own shows' events, and a performer's
show lives on one node, so a member connected to another node is not told yet:
that needs the cross-node bus the chat uses; see docs/social.md).

``render_rss`` writes an RSS 2.0 document with ElementTree, so every title and
body is escaped and the result is always well-formed XML.
"""

from __future__ import annotations

import email.utils
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any]], None]


class OnlineNotifier:
    """member id -> the send functions of its live signaling sessions."""

    def __init__(self) -> None:
        self._subs: dict[str, dict[int, Send]] = {}
        self._next = 0

    def attach(self, member_id: str, send: Send) -> Callable[[], None]:
        """Register a session; returns the function that unregisters it (idempotent)."""
        self._next += 1
        key = self._next
        self._subs.setdefault(member_id, {})[key] = send

        def detach() -> None:
            subs = self._subs.get(member_id)
            if subs is not None:
                subs.pop(key, None)
                if not subs:
                    self._subs.pop(member_id, None)

        return detach

    def connected(self, member_id: str) -> bool:
        """Whether the member has a live session here."""
        return bool(self._subs.get(member_id))

    def notify(self, member_id: str, event: str, data: dict[str, Any]) -> int:
        """Send ``event`` to every session of the member; returns how many. A failing send is logged."""
        sent = 0
        for send in list(self._subs.get(member_id, {}).values()):
            try:
                send(event, data)
                sent += 1
            except Exception:  # noqa: BLE001 - one broken socket must not stop the others
                log.exception("notification send failed", extra={"member_id": member_id, "event": event})
        return sent


@dataclass(frozen=True)
class FeedItem:
    """One RSS item."""

    guid: str
    title: str
    description: str
    link: str
    at: float  # UNIX seconds


def _rfc822(at: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(at, UTC))


def render_rss(title: str, link: str, description: str, items: Sequence[FeedItem], built_at: float) -> bytes:
    """An RSS 2.0 document (UTF-8 bytes with the XML declaration)."""
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = title
    ET.SubElement(channel, "link").text = link
    ET.SubElement(channel, "description").text = description
    ET.SubElement(channel, "lastBuildDate").text = _rfc822(built_at)
    ET.SubElement(channel, "ttl").text = "5"
    for it in items:
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = it.title
        ET.SubElement(item, "link").text = it.link
        ET.SubElement(item, "description").text = it.description
        ET.SubElement(item, "guid", {"isPermaLink": "false"}).text = it.guid
        ET.SubElement(item, "pubDate").text = _rfc822(it.at)
    return bytes(ET.tostring(rss, encoding="utf-8", xml_declaration=True))
