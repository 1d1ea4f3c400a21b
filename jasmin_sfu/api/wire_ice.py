"""The wire shape of ``GET /api/v1/ice-servers`` (``jasmin_sfu.api.ice_servers``, docs/deploy.md),
and its row of the paths table."""

from __future__ import annotations

from typing import Annotated

from jasmin_sfu.api.wire import Closed, Meta, Op


class IceServer(Closed):
    """One RTCIceServer with a time-limited TURN credential."""

    urls: Annotated[
        list[str],
        Meta(
            min_length=1,
            extra_json_schema={
                "example": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"]
            },
        ),
    ]
    username: Annotated[
        str,
        Meta(
            description="<expiry, UNIX seconds>:<random id>",
            extra_json_schema={"example": "1767225600:9f86d081884c7d65"},
        ),
    ]
    credential: Annotated[str, Meta(description="base64(HMAC-SHA1(turn.secret, username))")]


class IceServers(Closed):
    ice_servers: Annotated[list[IceServer], Meta(description="Empty when this node configures no TURN server")]
    expires_at: Annotated[int, Meta(description="When the credentials stop working, UNIX seconds (null: none)")] | None


ERRORS = {
    400: "An unknown query parameter",
    401: "Missing, malformed, unknown, expired or revoked token",
    503: "Accounts are not enabled on this node, or the database is busy",
}
OPS: tuple[Op, ...] = (
    Op(
        "get",
        "/api/v1/ice-servers",
        "iceServers",
        "RTCPeerConnection iceServers with time-limited TURN credentials (any session token)",
        {200: ("TURN servers and fresh credentials", IceServers)},
        tuple(ERRORS),
        ERRORS,
        bearer=True,
    ),
)
