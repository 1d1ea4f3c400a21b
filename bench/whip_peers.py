"""aiortc peers that speak WHIP (RFC 9725) and WHEP instead of signaling v1.

The same tracks, send log and packet counter as bench/peers.py; only the
offer/answer goes over one HTTP POST (the client offers in both directions).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from bench.peers import PacketCounter, PatternTrack, SendLog, ToneTrack, _consume_frames, count_packets, new_pc

SDP = "application/sdp"


class WhipError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


@dataclass
class HttpPeer:
    """One WHIP publisher or WHEP viewer: its connection and its session resource."""

    pc: RTCPeerConnection
    base: str  # http://host:port
    location: str
    etag: str
    headers: Any  # the 201's headers (multidict)
    token: str | None = None
    log: SendLog | None = None
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)
    counter: PacketCounter | None = None
    _tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.base + self.location

    async def delete(self) -> int:
        """DELETE the session resource; returns the status."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession() as s:
            async with s.delete(self.url, headers=headers) as r:
                return r.status

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()


async def post_offer(url: str, sdp: str, token: str | None) -> tuple[int, str, Any]:
    headers = {"Content-Type": SDP}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=sdp.encode(), headers=headers) as r:
            return r.status, await r.text(), r.headers.copy()


async def _exchange(pc: RTCPeerConnection, http: str, path: str, token: str | None) -> tuple[str, str, Any]:
    await pc.setLocalDescription(await pc.createOffer())
    status, body, headers = await post_offer(http + path, pc.localDescription.sdp, token)
    if status != 201:
        await pc.close()
        raise WhipError(status, body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return headers["Location"], headers["ETag"], headers


async def whip_publish(
    http: str, show_id: str, token: str | None, tracks: list[MediaStreamTrack] | None = None, log: bool = True
) -> HttpPeer:
    """Publish ``tracks`` (pattern + tone by default) to ``/whip/{show_id}``."""
    pc = new_pc()
    tracks = tracks if tracks is not None else [PatternTrack(), ToneTrack(noise=True)]
    for tr in tracks:
        pc.addTransceiver(tr, direction="sendonly")
    location, etag, headers = await _exchange(pc, http, f"/whip/{show_id}", token)
    peer = HttpPeer(pc, http, location, etag, headers, token, tracks=tracks)
    if log:
        peer.log = SendLog().attach(pc)
    return peer


async def whep_play(http: str, show_id: str, token: str | None = None, *, count: bool = True) -> HttpPeer:
    """Play ``/whep/{show_id}``: a recvonly video + audio offer; frames decoded and, with
    ``count``, every RTP packet counted (payload digests kept) before aiortc sees it."""
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    holder: list[HttpPeer] = []
    early: list[MediaStreamTrack] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if holder:
            holder[0].tracks.append(track)
            # _consume_frames only counts into .frames, which an HttpPeer has too.
            holder[0]._tasks.append(asyncio.ensure_future(_consume_frames(holder[0], track)))  # type: ignore[arg-type]
        else:
            early.append(track)

    location, etag, headers = await _exchange(pc, http, f"/whep/{show_id}", token)
    peer = HttpPeer(pc, http, location, etag, headers, token)
    holder.append(peer)
    for track in early:
        on_track(track)
    if count:
        peer.counter = count_packets(pc, pass_through=True)
        peer.counter.keep_payloads = True
    return peer
