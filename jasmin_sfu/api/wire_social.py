"""The wire shapes of the social routes (``jasmin_sfu.api.rest_social``, docs/social.md), and
their rows of the paths table. Written once: validation, the answers and ``/openapi.json`` come
from here (``jasmin_sfu.api.wire`` says how)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from jasmin_sfu.api.wire import (
    UNSET,
    USERNAME_PARAM,
    Body,
    Language,
    Meta,
    Op,
    UnsetType,
    Username,
    View,
    one_of,
    path_param,
    text,
)
from jasmin_sfu.api.wire_accounts import Category, enum
from jasmin_sfu.services.accounts import CATEGORIES
from jasmin_sfu.services.search import (
    BUILDS,
    CAMERA_QUALITIES,
    ETHNICITIES,
    HAIR_COLOURS,
    MAX_AGE,
    MAX_LANGUAGES,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PRESET_LANGUAGES,
    MAX_QUERY_CHARS,
    MIN_AGE,
    SEXUAL_PREFERENCES,
    SORTS,
)
from jasmin_sfu.services.search import MAX_PRICE as MAX_SEARCH_PRICE

if TYPE_CHECKING:  # Literal types at run time (validated), strings to mypy
    HairColour = str
    Build = str
    SexualPreference = str
    Ethnicity = str
    CameraQuality = str
    Sort = str
else:
    HairColour = one_of(HAIR_COLOURS)
    Build = one_of(BUILDS)
    SexualPreference = one_of(SEXUAL_PREFERENCES)
    Ethnicity = one_of(ETHNICITIES)
    CameraQuality = one_of(CAMERA_QUALITIES)
    Sort = one_of(SORTS)

Age = Annotated[int, Meta(ge=MIN_AGE, le=MAX_AGE)]
SearchPrice = Annotated[int, Meta(ge=1, le=MAX_SEARCH_PRICE)]
Stars = Annotated[int, Meta(ge=1, le=5)]
SearchText = Annotated[str, text(MAX_QUERY_CHARS, min_len=1, storable_only=True)]
FEED_TOKEN_PATTERN = "^jasf_[A-Za-z0-9_-]{43}$"
UNSUBSCRIBE_TOKEN_PATTERN = "^jasu_[A-Za-z0-9_-]{32}$"
PRESET_ID_PATTERN = "^sp_[0-9a-f]{20}$"

# -- requests -------------------------------------------------------------------------------


class SocialEmpty(Body):
    """No fields (the body may be left out)."""


class UpdateFeedRequest(Body):
    performers: Annotated[list[Username], Meta(max_length=96)] | UnsetType = UNSET
    categories: Annotated[list[Category], Meta(max_length=len(CATEGORIES))] | UnsetType = UNSET
    favourites: bool | UnsetType = UNSET
    system_messages: bool | UnsetType = UNSET


class SystemMessageRequest(Body):
    title: Annotated[str, text(200, min_len=1)]
    body: Annotated[str, text(5000, min_len=1, multiline=True)]


class MailingRequest(Body):
    subject: Annotated[str, text(200, min_len=1)]
    body: Annotated[str, text(10000, min_len=1, multiline=True)]


class RatingRequest(Body):
    stars: Stars


class MessageRequest(Body):
    body: Annotated[str, text(2000, min_len=1, multiline=True)]


class UpdateAttributesRequest(Body):
    hair_colour: HairColour | UnsetType = UNSET
    build: Build | UnsetType = UNSET
    age: Age | UnsetType = UNSET
    sexual_preference: SexualPreference | UnsetType = UNSET
    ethnicity: Ethnicity | UnsetType = UNSET
    camera_quality: CameraQuality | UnsetType = UNSET
    languages: Annotated[list[Language], Meta(max_length=MAX_LANGUAGES, description="ISO 639-1 codes")] | UnsetType = (
        UNSET
    )


class SearchFilters(Body):
    """A preset's filters: the search parameters as JSON types (no paging). A minimum above its
    maximum (age_min > age_max, price_min > price_max) is an empty range: it matches no performer."""

    hair_colour: Annotated[list[HairColour], Meta(max_length=len(HAIR_COLOURS))] | UnsetType = UNSET
    build: Annotated[list[Build], Meta(max_length=len(BUILDS))] | UnsetType = UNSET
    sexual_preference: Annotated[list[SexualPreference], Meta(max_length=len(SEXUAL_PREFERENCES))] | UnsetType = UNSET
    ethnicity: Annotated[list[Ethnicity], Meta(max_length=len(ETHNICITIES))] | UnsetType = UNSET
    camera_quality: Annotated[list[CameraQuality], Meta(max_length=len(CAMERA_QUALITIES))] | UnsetType = UNSET
    category: Annotated[list[Category], Meta(max_length=len(CATEGORIES))] | UnsetType = UNSET
    language: Annotated[list[Language], Meta(max_length=MAX_PRESET_LANGUAGES)] | UnsetType = UNSET
    q: SearchText | UnsetType = UNSET
    age_min: Age | UnsetType = UNSET
    age_max: Age | UnsetType = UNSET
    price_min: SearchPrice | UnsetType = UNSET
    price_max: SearchPrice | UnsetType = UNSET
    min_rating: Stars | UnsetType = UNSET
    online: bool | UnsetType = UNSET
    favourites_only: bool | UnsetType = UNSET
    sort: Sort | UnsetType = UNSET


class PresetRequest(Body):
    name: Annotated[str, text(64, min_len=1)]
    query: SearchFilters


# -- responses ------------------------------------------------------------------------------

Categories = list[Annotated[str, enum(CATEGORIES)]]


class TopMembership(View):
    status: Annotated[str, enum(("none", "active", "cancelled", "lapsed", "expired"))]
    active: Annotated[bool, Meta(description="TopMember benefits now")]
    auto_renew: bool
    started_at: float | None
    paid_until: Annotated[float, Meta(description="End of the paid 14-day period, UNIX seconds")] | None
    period: Annotated[int, Meta(description="Last paid period number (0 = the first; -1 none)")]
    fee_credits: int
    period_days: int


class FavouriteView(View):
    username: str
    display_name: str
    price_per_minute: int
    categories: Categories
    online: bool
    added_at: float


class Favourites(View):
    favourites: list[FavouriteView]
    count: int
    limit: Annotated[int, Meta(description="24, or 96 for TopMembers")]


class FavouriteAdded(View):
    username: str
    added: bool


class Feed(View):
    performers: list[str]
    categories: Categories
    favourites: bool
    system_messages: bool
    has_token: bool


class FeedToken(View):
    token: Annotated[str, Meta(description="Shown once; rotating makes the old URL stop working")]
    path: str
    url: str


class SystemMessage(View):
    id: str
    title: str
    body: str
    created_at: float


class MailingSubscription(View):
    performer: str
    subscribed_at: float
    unsubscribe_url: str


class Unsubscribed(View):
    unsubscribed: bool
    performer: str


class Mailing(View):
    id: str
    subject: str
    sent_at: float
    recipients: int


class UnsubscribeHeaders(View):
    list_unsubscribe: Annotated[str, Meta(description="<unsubscribe_url> (RFC 2369)")] = msgspec.field(
        name="List-Unsubscribe"
    )
    list_unsubscribe_post: Annotated[
        str, enum(("List-Unsubscribe=One-Click",), description="RFC 8058: a mail client POSTs this to the URL")
    ] = msgspec.field(name="List-Unsubscribe-Post")


class InboxMessage(View):
    id: str
    performer: str
    subject: str
    body: str
    sent_at: float
    unsubscribe_url: Annotated[
        str,
        Meta(description="Works without login: GET shows a confirmation page, POST unsubscribes (RFC 8058 one-click)"),
    ]
    headers: UnsubscribeHeaders


class Inbox(View):
    messages: list[InboxMessage]


class Rating(View):
    performer: str
    stars: Stars | None


class Vote(View):
    performer: str
    period: Annotated[str, Meta(description="The award period: calendar month, UTC (YYYY-MM)")]


class PerformerMessage(View):
    id: str
    member: str
    performer: str
    body: str
    created_at: float


class PerformerMessages(View):
    messages: list[PerformerMessage]


class Attributes(View):
    """A performer's search attributes (null: not given)."""

    hair_colour: Annotated[str, enum(HAIR_COLOURS)] | None
    build: Annotated[str, enum(BUILDS)] | None
    age: Age | None
    sexual_preference: Annotated[str, enum(SEXUAL_PREFERENCES)] | None
    ethnicity: Annotated[str, enum(ETHNICITIES)] | None
    camera_quality: Annotated[str, enum(CAMERA_QUALITIES)] | None
    languages: Annotated[list[Language], Meta(max_length=MAX_LANGUAGES, description="ISO 639-1 codes")]


class PerformerAttributes(Attributes):
    performer: str


class SearchResult(View):
    username: str
    display_name: str
    price_per_minute: int
    categories: Categories
    attributes: Attributes
    online: bool
    my_rating: Annotated[int, Meta(description="The caller's own rating; nobody else's is ever shown")] | None
    favourite: bool


class SearchResults(View):
    results: list[SearchResult]
    total: int
    offset: int
    limit: int
    next_offset: int | None
    filters: Annotated[dict[str, Any], Meta(description="The filters applied (a preset's, then the parameters)")]


class Preset(View):
    id: str
    name: str
    query: dict[str, Any]
    created_at: float


class Presets(View):
    presets: list[Preset]


# -- the paths table ------------------------------------------------------------------------

ERRORS = {
    400: "Malformed body or parameter, unknown field, or a value out of range",
    401: "Missing, malformed, unknown, expired or revoked token",
    402: "insufficient_credits: the wallet cannot pay the 15-credit TopMember fee",
    403: "forbidden (role), adult_confirmation_required, favourites_lapsed (no purchase for over 30 days), "
    "top_membership_required, private_required, vote_not_eligible (no private of 300 s)",
    404: "No such performer, preset, feed, subscription or rating",
    409: "favourites_full (24; 96 for TopMembers), already_voted (this award period), preset_exists, presets_full",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    429: "rate_limited: one mailing per 24 hours; error.retry_at (UNIX seconds) and Retry-After say when",
    503: "Accounts, billing or the social features are not enabled on this node, or the database is busy",
}
BODY = (400, 413, 415)
ME = (401, 403, 503)


def _op(*args: Any, **kw: Any) -> Op:
    kw.setdefault("bearer", True)
    return Op(*args, **kw).described(ERRORS)


def _search_parameters() -> tuple[dict[str, Any], ...]:
    """The query parameters of the search: the filters of :class:`SearchFilters`, as a query string
    carries them, and the paging."""
    params: list[dict[str, Any]] = []
    multi = {
        "hair_colour": HAIR_COLOURS,
        "build": BUILDS,
        "sexual_preference": SEXUAL_PREFERENCES,
        "ethnicity": ETHNICITIES,
        "camera_quality": CAMERA_QUALITIES,
        "category": CATEGORIES,
    }
    for name, values in multi.items():
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "schema": {"type": "array", "items": {"type": "string", "enum": list(values)}},
            }
        )
    params.append(
        {
            "name": "language",
            "in": "query",
            "required": False,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{2}$"}},
        }
    )
    for name, lo, hi in (
        ("age_min", MIN_AGE, MAX_AGE),
        ("age_max", MIN_AGE, MAX_AGE),
        ("price_min", 1, MAX_SEARCH_PRICE),
        ("price_max", 1, MAX_SEARCH_PRICE),
        ("min_rating", 1, 5),
        ("limit", 1, MAX_LIMIT),
        ("offset", 0, MAX_OFFSET),
    ):
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": lo, "maximum": hi},
            }
        )
    q = msgspec.json.schema(SearchText)
    params += [
        {
            "name": "q",
            "in": "query",
            "required": False,
            "schema": q,
            "description": "Part of the username or display name",
        },
        {"name": "online", "in": "query", "required": False, "schema": {"type": "boolean"}},
        {"name": "favourites_only", "in": "query", "required": False, "schema": {"type": "boolean"}},
        {"name": "sort", "in": "query", "required": False, "schema": {"type": "string", "enum": list(SORTS)}},
        {
            "name": "preset",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": PRESET_ID_PATTERN},
            "description": "Apply a saved search first; the other parameters refine it",
        },
    ]
    return tuple(params)


_USER = (USERNAME_PARAM,)
_FEED = (path_param("feed_token", {"type": "string", "pattern": FEED_TOKEN_PATTERN}),)
_UNSUB = (path_param("unsubscribe_token", {"type": "string", "pattern": UNSUBSCRIBE_TOKEN_PATTERN}),)
_PRESET = (path_param("preset_id", {"type": "string", "pattern": PRESET_ID_PATTERN}),)
_RSS = {"content": {"application/rss+xml": {"schema": {"type": "string"}}}}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_ONE_CLICK_FORM = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}
        }
    },
}
_EMPTY = {"body": SocialEmpty, "body_required": False}

OPS: tuple[Op, ...] = (
    _op(
        "get",
        "/api/v1/me/top-membership",
        "topMembership",
        "The caller's TopMembership",
        {200: ("The membership", TopMembership)},
        ME,
    ),
    _op(
        "post",
        "/api/v1/me/top-membership",
        "subscribeTopMembership",
        "Become a TopMember: 15 credits now and every 14 days (or resume renewal)",
        {
            201: ("Subscribed; the first fee was charged", TopMembership),
            200: ("Already a TopMember (renewal back on)", TopMembership),
        },
        (*BODY, 402, *ME),
        **_EMPTY,
    ),
    _op(
        "delete",
        "/api/v1/me/top-membership",
        "cancelTopMembership",
        "Stop renewal; the benefits last until paid_until",
        {200: ("Cancelled", TopMembership)},
        (*ME, 404),
    ),
    _op("get", "/api/v1/me/favourites", "favourites", "The caller's favourites", {200: ("Favourites", Favourites)}, ME),
    _op(
        "put",
        "/api/v1/me/favourites/{username}",
        "addFavourite",
        "Add a favourite (24; 96 for TopMembers)",
        {201: ("Added", FavouriteAdded), 200: ("Already one", FavouriteAdded)},
        (*ME, 404, 409),
        parameters=_USER,
    ),
    _op(
        "delete",
        "/api/v1/me/favourites/{username}",
        "removeFavourite",
        "Remove a favourite",
        {204: ("Removed", None)},
        (*ME, 404),
        parameters=_USER,
    ),
    _op("get", "/api/v1/me/feed", "feedSettings", "What the caller's RSS feed carries", {200: ("Settings", Feed)}, ME),
    _op(
        "patch",
        "/api/v1/me/feed",
        "updateFeed",
        "Choose performers, categories, favourites and system messages",
        {200: ("Settings", Feed)},
        (*BODY, *ME, 404),
        body=UpdateFeedRequest,
    ),
    _op(
        "post",
        "/api/v1/me/feed/token",
        "rotateFeedToken",
        "A new private feed URL (the old one stops)",
        {201: ("The feed URL, shown once", FeedToken)},
        (*BODY, *ME),
        **_EMPTY,
    ),
    _op(
        "get",
        "/api/v1/feeds/{feed_token}.rss",
        "readFeed",
        "The member's RSS 2.0 feed (no login: the URL is the key)",
        {200: ("RSS 2.0", _RSS)},
        (404, 503),
        bearer=False,
        parameters=_FEED,
    ),
    _op(
        "post",
        "/api/v1/system-messages",
        "postSystemMessage",
        "A site message for the feeds (admins)",
        {201: ("Posted", SystemMessage)},
        (*BODY, *ME),
        body=SystemMessageRequest,
    ),
    _op(
        "put",
        "/api/v1/performers/{username}/mailing-list",
        "subscribeMailingList",
        "Join the performer's mailing list (after a private with it)",
        {201: ("Subscribed", MailingSubscription), 200: ("Already subscribed", MailingSubscription)},
        (*BODY, *ME, 404),
        parameters=_USER,
        **_EMPTY,
    ),
    _op(
        "delete",
        "/api/v1/performers/{username}/mailing-list",
        "unsubscribeMailingList",
        "Leave the mailing list",
        {204: ("Left", None)},
        (*ME, 404),
        parameters=_USER,
    ),
    _op(
        "get",
        "/api/v1/mailing-list/unsubscribe/{unsubscribe_token}",
        "unsubscribeConfirmationPage",
        "The unsubscribe link of every mailing (no login): a confirmation page",
        {200: ("An HTML page with a form that POSTs List-Unsubscribe=One-Click", _HTML)},
        (404, 503),
        bearer=False,
        parameters=_UNSUB,
        description="Changes nothing: mail scanners and link previews follow links. The page's button POSTs to"
        " the same URL.",
    ),
    _op(
        "post",
        "/api/v1/mailing-list/unsubscribe/{unsubscribe_token}",
        "unsubscribeByLink",
        "Leave the mailing list by the link (no login; RFC 8058 one-click)",
        {200: ("Unsubscribed", Unsubscribed)},
        (404, 503),
        bearer=False,
        parameters=_UNSUB,
        request_body=_ONE_CLICK_FORM,
        description="What a mail client sends for the List-Unsubscribe-Post header. The body"
        " (List-Unsubscribe=One-Click) may be left out: the token is the key. A second use is 404.",
    ),
    _op(
        "post",
        "/api/v1/me/mailings",
        "sendMailing",
        "A performer's message to its mailing list: one per 24 hours",
        {201: ("Delivered to every subscriber's inbox", Mailing)},
        (*BODY, *ME, 429),
        body=MailingRequest,
    ),
    _op(
        "get",
        "/api/v1/me/inbox",
        "inbox",
        "Mailings delivered to the caller, newest first",
        {200: ("The inbox", Inbox)},
        ME,
    ),
    _op(
        "get",
        "/api/v1/performers/{username}/rating",
        "myRating",
        "The caller's own rating of the performer (My Rating)",
        {200: ("The rating (stars null: none)", Rating)},
        (*ME, 404),
        parameters=_USER,
    ),
    _op(
        "put",
        "/api/v1/performers/{username}/rating",
        "rate",
        "Give 1-5 stars, seen by the caller only",
        {200: ("Rated", Rating)},
        (*BODY, *ME, 404),
        parameters=_USER,
        body=RatingRequest,
    ),
    _op(
        "delete",
        "/api/v1/performers/{username}/rating",
        "deleteRating",
        "Take the rating back",
        {204: ("Deleted", None)},
        (*ME, 404),
        parameters=_USER,
    ),
    _op(
        "post",
        "/api/v1/performers/{username}/votes",
        "vote",
        "A TopMember Awards vote: after a private of 300 s, once per award period",
        {201: ("Counted", Vote)},
        (*BODY, *ME, 404, 409),
        parameters=_USER,
        **_EMPTY,
    ),
    _op(
        "post",
        "/api/v1/performers/{username}/messages",
        "messagePerformer",
        "A TopMember's message to a performer it had a private with",
        {201: ("Sent", PerformerMessage)},
        (*BODY, *ME, 404),
        parameters=_USER,
        body=MessageRequest,
    ),
    _op(
        "get",
        "/api/v1/me/messages",
        "messages",
        "A performer's received messages, or a member's sent ones",
        {200: ("Messages", PerformerMessages)},
        ME,
    ),
    _op(
        "get",
        "/api/v1/performers/{username}/attributes",
        "performerAttributes",
        "A performer's search attributes",
        {200: ("Attributes", PerformerAttributes)},
        (*ME, 404),
        parameters=_USER,
    ),
    _op(
        "patch",
        "/api/v1/performers/{username}/attributes",
        "updatePerformerAttributes",
        "Set search attributes (the performer itself, or an admin)",
        {200: ("Attributes", PerformerAttributes)},
        (*BODY, *ME, 404),
        parameters=_USER,
        body=UpdateAttributesRequest,
    ),
    _op(
        "get",
        "/api/v1/search/performers",
        "searchPerformers",
        "Advanced search: attributes, price, category, online, My Rating; sorted, paged",
        {200: ("A page of performers", SearchResults)},
        (400, *ME, 404),
        parameters=_search_parameters(),
        description="A minimum above its maximum (age_min > age_max, price_min > price_max) is an empty range:"
        " it matches no performer.",
    ),
    _op(
        "get",
        "/api/v1/me/search-presets",
        "searchPresets",
        "The caller's saved searches",
        {200: ("Presets", Presets)},
        ME,
    ),
    _op(
        "post",
        "/api/v1/me/search-presets",
        "createSearchPreset",
        'Save a search (e.g. "petite, 18-22")',
        {201: ("Saved", Preset)},
        (*BODY, *ME, 409),
        body=PresetRequest,
    ),
    _op(
        "delete",
        "/api/v1/me/search-presets/{preset_id}",
        "deleteSearchPreset",
        "Delete a saved search",
        {204: ("Deleted", None)},
        (*ME, 404),
        parameters=_PRESET,
    ),
)

EXAMPLES: dict[type[Body], dict[str, Any]] = {
    SocialEmpty: {},
    UpdateFeedRequest: {"performers": ["alice"], "categories": ["girl"], "favourites": True, "system_messages": False},
    SystemMessageRequest: {"title": "Maintenance", "body": "The site restarts at 04:00 UTC."},
    MailingRequest: {"subject": "Live tonight", "body": "See you at 21:00!"},
    RatingRequest: {"stars": 5},
    MessageRequest: {"body": "Thank you for the show!"},
    UpdateAttributesRequest: {"hair_colour": "blonde", "build": "slim", "age": 24, "languages": ["en", "de"]},
    SearchFilters: {"build": ["petite"], "age_min": 18, "age_max": 22, "sort": "online_first"},
    PresetRequest: {"name": "petite, 18-22", "query": {"build": ["petite"], "age_min": 18, "age_max": 22}},
}
