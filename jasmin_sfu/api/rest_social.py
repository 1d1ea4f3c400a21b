"""The REST routes of the social features under ``/api/v1`` (docs/social.md).

Installed by ``RestApi.app()`` (one line of ``rest.ROUTE_MODULES``) on the same sub-application, so the
accounts API's error middleware, body checks and bearer tokens apply. The
social service is looked up per request through ``SOCIAL_KEY``, which the
daemon sets on its root application (``request.config_dict`` sees it from the
``/api/v1`` sub-application). Social domain errors become HTTP answers here,
at the edge:

| error | status | code |
|---|---|---|
| ``SocialValidationError`` | 400 | ``bad_request`` |
| ``TopMemberFeeUnpaidError`` | 402 | ``insufficient_credits`` |
| ``FavouritesLapsedError`` | 403 | ``favourites_lapsed`` |
| ``TopMembershipRequiredError`` | 403 | ``top_membership_required`` |
| ``PrivateRequiredError`` | 403 | ``private_required`` |
| ``VoteNotEligibleError`` | 403 | ``vote_not_eligible`` |
| ``SocialNotFoundError`` | 404 | ``not_found`` |
| ``FavouritesFullError`` | 409 | ``favourites_full`` |
| ``AlreadyVotedError`` | 409 | ``already_voted`` |
| ``SocialConflictError`` | 409 | its ``reason`` (``preset_exists``, ``presets_full``) |
| ``MailingRateLimitedError`` | 429 | ``rate_limited``, with ``retry_at`` and ``Retry-After`` |
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any, Awaitable, Callable

from aiohttp import web

from jasmin_sfu.api import wire_social as wire
from jasmin_sfu.api.rest_common import ApiContext, ApiError, answer, map_error, read_body
from jasmin_sfu.api.wire import sent
from jasmin_sfu.services.errors import SocialError
from jasmin_sfu.services.search import Attributes, Candidate, SearchPage
from jasmin_sfu.services.social import Favourite, Feed, InboxMessage, Message, SocialService, TopMembership
from jasmin_sfu.services.social_notify import render_rss
from jasmin_sfu.store.social_repo import PresetRow

SocialLookup = Callable[[], "SocialService | None"]
# The value is a SocialLookup (the daemon opens the service in start(), after the app exists).
SOCIAL_KEY = web.AppKey("social", object)

Handler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


def social_error_response(exc: SocialError, now: float) -> web.Response:
    """A social domain error as the API's error shape (``now``: the service clock, for Retry-After)."""
    return (map_error(exc, now) or ApiError(400, "bad_request", str(exc))).response()


def _mapped(fn: Handler) -> Handler:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: web.Request) -> web.StreamResponse:
        try:
            return await fn(self, request)
        except SocialError as e:
            return social_error_response(e, self.service(request).clock())

    return wrapper


def _origin(request: web.Request) -> str:
    try:
        return str(request.url.origin())
    except (ValueError, TypeError):  # pragma: no cover - a Host header aiohttp cannot parse
        return ""


# -- views ----------------------------------------------------------------------------


def top_view(t: TopMembership) -> wire.TopMembership:
    return wire.TopMembership(
        status=t.status,
        active=t.active,
        auto_renew=t.auto_renew,
        started_at=t.started_at,
        paid_until=t.paid_until,
        period=t.period,
        fee_credits=t.fee_credits,
        period_days=t.period_days,
    )


def favourite_view(f: Favourite) -> wire.FavouriteView:
    p = f.profile
    return wire.FavouriteView(
        username=p.username,
        display_name=p.display_name,
        price_per_minute=p.price_per_minute,
        categories=list(p.categories),
        online=f.online,
        added_at=f.created_at,
    )


def feed_view(f: Feed) -> wire.Feed:
    return wire.Feed(
        performers=list(f.performers),
        categories=list(f.categories),
        favourites=f.favourites,
        system_messages=f.system_messages,
        has_token=f.has_token,
    )


def message_view(m: Message) -> wire.PerformerMessage:
    return wire.PerformerMessage(
        id=m.row.id, member=m.member, performer=m.performer, body=m.row.body, created_at=m.row.created_at / 1_000_000
    )


def unsubscribe_headers(url: str) -> dict[str, str]:
    """The mail headers of RFC 2369 and RFC 8058 (one-click): a mail client POSTs
    ``List-Unsubscribe=One-Click`` to the URL; a plain GET of it changes nothing."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def inbox_view(m: InboxMessage, origin: str) -> wire.InboxMessage:
    r = m.row
    url = f"{origin}/api/v1/mailing-list/unsubscribe/{r.unsubscribe_token}"
    headers = unsubscribe_headers(url)
    return wire.InboxMessage(
        id=r.id,
        performer=m.performer,
        subject=r.subject,
        body=r.body,
        sent_at=r.created_at / 1_000_000,
        unsubscribe_url=url,
        headers=wire.UnsubscribeHeaders(
            list_unsubscribe=headers["List-Unsubscribe"], list_unsubscribe_post=headers["List-Unsubscribe-Post"]
        ),
    )


_CONFIRM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head>
<body><h1>Leave {performer}'s mailing list?</h1>
<form method="post" action="">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
<p>Nothing changes until you press the button.</p></body></html>
"""


def attributes_view(a: Attributes) -> wire.Attributes:
    return wire.Attributes(**a.to_dict())


def candidate_view(c: Candidate) -> wire.SearchResult:
    return wire.SearchResult(
        username=c.username,
        display_name=c.display_name,
        price_per_minute=c.price_per_minute,
        categories=list(c.categories),
        attributes=attributes_view(c.attributes),
        online=c.online,
        my_rating=c.my_rating,
        favourite=c.favourite,
    )


def page_view(p: SearchPage) -> wire.SearchResults:
    return wire.SearchResults(
        results=[candidate_view(c) for c in p.results],
        total=p.total,
        offset=p.offset,
        limit=p.limit,
        next_offset=p.next_offset,
        filters=p.applied,
    )


def preset_view(p: PresetRow) -> wire.Preset:
    return wire.Preset(id=p.id, name=p.name, query=json.loads(p.query), created_at=p.created_at / 1_000_000)


class SocialRoutes:
    """The handlers; ``api`` is the accounts ``RestApi`` (tokens, services)."""

    def __init__(self, api: ApiContext) -> None:
        self.api = api

    def service(self, request: web.Request) -> SocialService:
        lookup = request.config_dict.get(SOCIAL_KEY)
        social = lookup() if callable(lookup) else None
        if social is not None and not isinstance(social, SocialService):  # pragma: no cover - wiring bug
            raise TypeError("SOCIAL_KEY must hold a SocialLookup")
        if social is None:
            raise ApiError(503, "social_unavailable", "the social features are not enabled on this node")
        return social

    def install(self, r: web.UrlDispatcher) -> None:
        r.add_get("/me/top-membership", self.top)
        r.add_post("/me/top-membership", self.subscribe_top)
        r.add_delete("/me/top-membership", self.cancel_top)
        r.add_get("/me/favourites", self.favourites)
        r.add_put("/me/favourites/{username}", self.add_favourite)
        r.add_delete("/me/favourites/{username}", self.remove_favourite)
        r.add_get("/me/feed", self.feed)
        r.add_patch("/me/feed", self.update_feed)
        r.add_post("/me/feed/token", self.rotate_feed_token)
        r.add_get("/feeds/{feed_token}.rss", self.read_feed)
        r.add_post("/system-messages", self.system_message)
        r.add_put("/performers/{username}/mailing-list", self.subscribe_mailing)
        r.add_delete("/performers/{username}/mailing-list", self.unsubscribe_mailing)
        r.add_get("/mailing-list/unsubscribe/{unsubscribe_token}", self.unsubscribe_page)
        r.add_post("/mailing-list/unsubscribe/{unsubscribe_token}", self.unsubscribe_link)
        r.add_post("/me/mailings", self.send_mailing)
        r.add_get("/me/inbox", self.inbox)
        r.add_get("/performers/{username}/rating", self.rating)
        r.add_put("/performers/{username}/rating", self.set_rating)
        r.add_delete("/performers/{username}/rating", self.delete_rating)
        r.add_post("/performers/{username}/votes", self.vote)
        r.add_post("/performers/{username}/messages", self.send_message)
        r.add_get("/me/messages", self.messages)
        r.add_get("/performers/{username}/attributes", self.attributes)
        r.add_patch("/performers/{username}/attributes", self.update_attributes)
        r.add_get("/search/performers", self.search)
        r.add_get("/me/search-presets", self.presets)
        r.add_post("/me/search-presets", self.add_preset)
        r.add_delete("/me/search-presets/{preset_id}", self.delete_preset)

    # -- TopMembership ----------------------------------------------------------------------

    @_mapped
    async def top(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        return answer(top_view(await self.service(request).top_membership(p)))

    @_mapped
    async def subscribe_top(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await read_body(request, wire.SocialEmpty, required=False)
        view, charged = await self.service(request).subscribe_top(p)
        return answer(top_view(view), status=201 if charged else 200)

    @_mapped
    async def cancel_top(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        return answer(top_view(await self.service(request).cancel_top(p)))

    # -- favourites --------------------------------------------------------------------------

    @_mapped
    async def favourites(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        self.api.accounts().require_adult(p)
        favs, limit = await self.service(request).list_favourites(p)
        return answer(wire.Favourites(favourites=[favourite_view(f) for f in favs], count=len(favs), limit=limit))

    @_mapped
    async def add_favourite(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        profile, added = await self.service(request).add_favourite(p, request.match_info["username"])
        return answer(wire.FavouriteAdded(username=profile.username, added=added), status=201 if added else 200)

    @_mapped
    async def remove_favourite(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await self.service(request).remove_favourite(p, request.match_info["username"])
        return web.Response(status=204)

    # -- feeds -------------------------------------------------------------------------------

    @_mapped
    async def feed(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        return answer(feed_view(await self.service(request).feed_settings(p)))

    @_mapped
    async def update_feed(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.UpdateFeedRequest)
        return answer(feed_view(await self.service(request).update_feed(p, **sent(body))))

    @_mapped
    async def rotate_feed_token(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await read_body(request, wire.SocialEmpty, required=False)
        token = await self.service(request).rotate_feed_token(p)
        path = f"/api/v1/feeds/{token}.rss"
        return answer(wire.FeedToken(token=token, path=path, url=_origin(request) + path), status=201)

    @_mapped
    async def read_feed(self, request: web.Request) -> web.Response:
        social = self.service(request)
        items = await social.feed_items(request.match_info["feed_token"])
        origin = _origin(request)
        for_items = [type(i)(i.guid, i.title, i.description, origin + i.link, i.at) for i in items]
        body = render_rss(
            "jasmin: your feed", origin + "/", "Performers coming online and site news", for_items, social.clock()
        )
        return web.Response(
            body=body,
            content_type="application/rss+xml",
            charset="utf-8",
            headers={"Cache-Control": "private, max-age=60"},
        )

    @_mapped
    async def system_message(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.SystemMessageRequest)
        row = await self.service(request).post_system_message(p, body.title, body.body)
        return answer(
            wire.SystemMessage(id=row.id, title=row.title, body=row.body, created_at=row.created_at / 1_000_000),
            status=201,
        )

    # -- mailing lists ------------------------------------------------------------------------

    @_mapped
    async def subscribe_mailing(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await read_body(request, wire.SocialEmpty, required=False)
        row, created = await self.service(request).subscribe_mailing(p, request.match_info["username"])
        return answer(
            wire.MailingSubscription(
                performer=request.match_info["username"],
                subscribed_at=row.created_at / 1_000_000,
                unsubscribe_url=f"{_origin(request)}/api/v1/mailing-list/unsubscribe/{row.token}",
            ),
            status=201 if created else 200,
        )

    @_mapped
    async def unsubscribe_mailing(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await self.service(request).unsubscribe_mailing(p, request.match_info["username"])
        return web.Response(status=204)

    @_mapped
    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        """GET of the link: a confirmation page, no state change (scanners follow links)."""
        performer = await self.service(request).unsubscribe_link_performer(request.match_info["unsubscribe_token"])
        return web.Response(
            text=_CONFIRM_PAGE.format(performer=html.escape(performer)),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    @_mapped
    async def unsubscribe_link(self, request: web.Request) -> web.Response:
        """POST of the link (RFC 8058 one-click, or the page's button): unsubscribes. The body
        (``List-Unsubscribe=One-Click``, form-encoded) is not required: the token is the key."""
        performer = await self.service(request).unsubscribe_token(request.match_info["unsubscribe_token"])
        return answer(wire.Unsubscribed(unsubscribed=True, performer=performer))

    @_mapped
    async def send_mailing(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.MailingRequest)
        row = await self.service(request).send_mailing(p, body.subject, body.body)
        return answer(
            wire.Mailing(id=row.id, subject=row.subject, sent_at=row.sent_at / 1_000_000, recipients=row.recipients),
            status=201,
        )

    @_mapped
    async def inbox(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        origin = _origin(request)
        return answer(wire.Inbox(messages=[inbox_view(m, origin) for m in await self.service(request).inbox(p)]))

    # -- ratings, votes, messages ----------------------------------------------------------------

    @_mapped
    async def rating(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        stars = await self.service(request).rating(p, request.match_info["username"])
        return answer(wire.Rating(performer=request.match_info["username"], stars=stars))

    @_mapped
    async def set_rating(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.RatingRequest)
        stars = await self.service(request).set_rating(p, request.match_info["username"], body.stars)
        return answer(wire.Rating(performer=request.match_info["username"], stars=stars))

    @_mapped
    async def delete_rating(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await self.service(request).delete_rating(p, request.match_info["username"])
        return web.Response(status=204)

    @_mapped
    async def vote(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await read_body(request, wire.SocialEmpty, required=False)
        period = await self.service(request).vote(p, request.match_info["username"])
        return answer(wire.Vote(performer=request.match_info["username"], period=period), status=201)

    @_mapped
    async def send_message(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.MessageRequest)
        m = await self.service(request).send_message(p, request.match_info["username"], body.body)
        return answer(message_view(m), status=201)

    @_mapped
    async def messages(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        messages = await self.service(request).messages(p)
        return answer(wire.PerformerMessages(messages=[message_view(m) for m in messages]))

    # -- attributes, search, presets -----------------------------------------------------------------

    @_mapped
    async def attributes(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        self.api.accounts().require_adult(p)
        profile, attrs = await self.service(request).attributes(request.match_info["username"])
        return answer(wire.PerformerAttributes(performer=profile.username, **attrs.to_dict()))

    @_mapped
    async def update_attributes(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.UpdateAttributesRequest)
        profile, attrs = await self.service(request).update_attributes(p, request.match_info["username"], sent(body))
        return answer(wire.PerformerAttributes(performer=profile.username, **attrs.to_dict()))

    @_mapped
    async def search(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        params = {k: request.query.getall(k) for k in request.query}
        return answer(page_view(await self.service(request).search(p, params)))

    @_mapped
    async def presets(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        return answer(wire.Presets(presets=[preset_view(x) for x in await self.service(request).presets(p)]))

    @_mapped
    async def add_preset(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        body = await read_body(request, wire.PresetRequest)
        row = await self.service(request).add_preset(p, body.name, sent(body.query))
        return answer(preset_view(row), status=201)

    @_mapped
    async def delete_preset(self, request: web.Request) -> web.Response:
        p = await self.api.principal(request)
        await self.service(request).delete_preset(p, request.match_info["preset_id"])
        return web.Response(status=204)


def install_social(r: web.UrlDispatcher, api: ApiContext) -> None:
    """Add the social routes to the ``/api/v1`` sub-application (``RestApi.app()`` calls this)."""
    SocialRoutes(api).install(r)
