"""REST routes of privacy rights (docs/privacy.md): profile, visibility, member views,
data download, "forget my data". Mounted by ``add_privacy_routes``, one line of ``rest.ROUTE_MODULES``.

The privacy service is found through the daemon's app (``PRIVACY_KEY`` holds a
getter; ``request.config_dict`` reaches it from the ``/api/v1`` sub-app), so the
shared ``RestApi`` needs one line for these routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jasmin_sfu.api.rest_common import ApiContext, ApiError, json_body
from jasmin_sfu.services.privacy import PrivacyService, profile_dict
from jasmin_sfu.store.accounts_repo import MemberProfileRow

# Holds a ``Callable[[], PrivacyService | None]`` (the service opens in ``Daemon.start``).
PRIVACY_KEY = web.AppKey("privacy", object)

_PROFILE_FIELDS = {
    "display_name": ("str", False),
    "gender": ("str", False),
    "age_range": ("str", False),
    "country": ("str", False),
    "languages": ("list[str]", False),
    "about": ("str", False),
}


def _privacy(request: web.Request) -> PrivacyService:
    get = request.config_dict.get(PRIVACY_KEY)
    p = get() if callable(get) else None
    if p is None:
        raise ApiError(503, "accounts_unavailable", "accounts are not enabled on this node")
    return p


def settings_view(row: MemberProfileRow) -> dict[str, Any]:
    """The two visibility settings."""
    return {"profile_visibility": row.profile_visibility, "mask_visibility": row.mask_visibility}


def add_privacy_routes(router: web.UrlDispatcher, api: ApiContext) -> None:
    """Register the privacy routes on the ``/api/v1`` sub-app's router."""

    async def get_profile(request: web.Request) -> web.Response:
        p = await api.principal(request)
        priv = _privacy(request)
        row = await priv.profile(p)
        return web.json_response({**profile_dict(row), "mask": await priv.mask(p.id)})

    async def patch_profile(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await json_body(request, _PROFILE_FIELDS)
        priv = _privacy(request)
        row = await priv.update_profile(p, body)
        return web.json_response({**profile_dict(row), "mask": await priv.mask(p.id)})

    async def get_settings(request: web.Request) -> web.Response:
        p = await api.principal(request)
        return web.json_response(settings_view(await _privacy(request).profile(p)))

    async def patch_settings(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await json_body(request, {"profile_visibility": ("str", False), "mask_visibility": ("str", False)})
        row = await _privacy(request).update_settings(p, **body)
        return web.json_response(settings_view(row))

    async def download(request: web.Request) -> web.Response:
        p = await api.principal(request)
        data = await _privacy(request).download(p)
        return web.json_response(
            data, headers={"Content-Disposition": 'attachment; filename="jasmin-data.json"', "Cache-Control": "no-store"}
        )

    async def erasure(request: web.Request) -> web.Response:
        p = await api.principal(request)
        body = await json_body(request, {"password": ("str", True)})
        result = await _privacy(request).request_erasure(p, body["password"], client=request.remote)
        return web.json_response(
            {"status": "completed" if result.completed else "pending", "member_id": result.user_id, "rows": result.rows},
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
