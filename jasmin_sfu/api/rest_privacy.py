"""REST routes of privacy rights (docs/privacy.md): profile, visibility, member views,
data download, "forget my data". Mounted by ``add_privacy_routes``, one line of ``rest.ROUTE_MODULES``.

The privacy service is found through the daemon's app (``PRIVACY_KEY`` holds a
getter; ``request.config_dict`` reaches it from the ``/api/v1`` sub-app), so the
shared ``RestApi`` needs one line for these routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jasmin_sfu.api import wire_privacy as wire
from jasmin_sfu.api.rest_common import ApiContext, ApiError, answer, read_body
from jasmin_sfu.api.wire import sent
from jasmin_sfu.services.privacy import PrivacyService, profile_dict
from jasmin_sfu.store.accounts_repo import MemberProfileRow

# Holds a ``Callable[[], PrivacyService | None]`` (the service opens in ``Daemon.start``).
PRIVACY_KEY = web.AppKey("privacy", object)


def _privacy(request: web.Request) -> PrivacyService:
    get = request.config_dict.get(PRIVACY_KEY)
    p = get() if callable(get) else None
    if p is None:
        raise ApiError(503, "accounts_unavailable", "accounts are not enabled on this node")
    return p


def settings_view(row: MemberProfileRow) -> wire.PrivacySettings:
    """The two visibility settings."""
    return wire.PrivacySettings(profile_visibility=row.profile_visibility, mask_visibility=row.mask_visibility)


def profile_view(row: MemberProfileRow, mask: dict[str, Any]) -> wire.PrivacyProfile:
    """The member's own profile and mask."""
    return wire.PrivacyProfile(**profile_dict(row), mask=wire.PrivacyMask(**mask))


def add_privacy_routes(router: web.UrlDispatcher, api: ApiContext) -> None:
    """Register the privacy routes on the ``/api/v1`` sub-app's router."""

    async def get_profile(request: web.Request) -> web.Response:
        p = await api.principal(request)
        priv = _privacy(request)
        row = await priv.profile(p)
        return answer(profile_view(row, await priv.mask(p.id)))

    async def patch_profile(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await read_body(request, wire.PrivacyProfilePatch)
        priv = _privacy(request)
        row = await priv.update_profile(p, sent(body))
        return answer(profile_view(row, await priv.mask(p.id)))

    async def get_settings(request: web.Request) -> web.Response:
        p = await api.principal(request)
        return answer(settings_view(await _privacy(request).profile(p)))

    async def patch_settings(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await read_body(request, wire.PrivacySettingsPatch)
        row = await _privacy(request).update_settings(p, **sent(body))
        return answer(settings_view(row))

    async def download(request: web.Request) -> web.Response:
        p = await api.principal(request)
        data = await _privacy(request).download(p)
        return web.json_response(
            data,
            headers={"Content-Disposition": 'attachment; filename="jasmin-data.json"', "Cache-Control": "no-store"},
        )

    async def erasure(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await read_body(request, wire.PrivacyErasureRequest)
        result = await _privacy(request).request_erasure(p, body.password, client=request.remote)
        return answer(
            wire.PrivacyErasure(
                status="completed" if result.completed else "pending", member_id=result.user_id, rows=result.rows
            ),
            status=200 if result.completed else 202,
        )

    async def member(request: web.Request) -> web.Response:
        p = await api.principal(request)
        view = await _privacy(request).member_view_by_username(request.match_info["username"], p)
        return web.json_response(view)

    async def member_by_id(request: web.Request) -> web.Response:
        p = await api.principal(request)
        view = await _privacy(request).member_view(request.match_info["member_id"], p)
        return web.json_response(view)

    router.add_get("/me/profile", get_profile)
    router.add_patch("/me/profile", patch_profile)
    router.add_get("/me/privacy", get_settings)
    router.add_patch("/me/privacy", patch_settings)
    router.add_get("/me/data", download)
    router.add_post("/me/erasure", erasure)
    router.add_get("/members/by-id/{member_id}", member_by_id)
    router.add_get("/members/{username}", member)
