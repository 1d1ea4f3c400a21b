"""The wire shapes of the privacy routes (``jasmin_sfu.api.rest_privacy``, docs/privacy.md), and
their rows of the paths table. Written once: validation, the answers and ``/openapi.json`` come
from here (``jasmin_sfu.api.wire`` says how). Struct names are prefixed ``Privacy``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from jasmin_sfu.api.wire import (
    UNSET,
    USERNAME_PATTERN,
    Body,
    Closed,
    Language,
    Meta,
    Op,
    UnsetType,
    View,
    one_of,
    path_param,
    text,
)
from jasmin_sfu.api.wire_accounts import enum
from jasmin_sfu.services.privacy import (
    AGE_RANGES,
    GENDERS,
    MASK_RANKS,
    MAX_ABOUT,
    MAX_DISPLAY_NAME,
    MAX_LANGUAGES,
)
from jasmin_sfu.store.accounts_repo import MASK_VISIBILITIES, PROFILE_VISIBILITIES

if TYPE_CHECKING:  # Literal types at run time (validated), strings to mypy
    GenderOrBlank = str
    AgeRangeOrBlank = str
    ProfileVisibility = str
    MaskVisibility = str
else:
    GenderOrBlank = one_of((*GENDERS, ""))
    AgeRangeOrBlank = one_of((*AGE_RANGES, ""))
    ProfileVisibility = one_of(PROFILE_VISIBILITIES)
    MaskVisibility = one_of(MASK_VISIBILITIES)

Languages = Annotated[list[Language], Meta(max_length=MAX_LANGUAGES, extra_json_schema={"uniqueItems": True})]

# -- requests -------------------------------------------------------------------------------


class PrivacyProfilePatch(Body):
    """Only the fields sent change; "" (or [] for languages) clears one."""

    display_name: Annotated[str, text(MAX_DISPLAY_NAME)] | UnsetType = UNSET
    gender: GenderOrBlank | UnsetType = UNSET
    age_range: AgeRangeOrBlank | UnsetType = UNSET
    country: Annotated[str, Meta(pattern="^([A-Z]{2})?$(?!\n)", description='ISO 3166-1 alpha-2; "" clears')] | (
        UnsetType
    ) = UNSET
    languages: Languages | UnsetType = UNSET
    about: Annotated[str, text(MAX_ABOUT, multiline=True)] | UnsetType = UNSET


class PrivacySettingsPatch(Body):
    profile_visibility: ProfileVisibility | UnsetType = UNSET
    mask_visibility: MaskVisibility | UnsetType = UNSET


class PrivacyErasureRequest(Body):
    password: Annotated[str, text(256, storable_only=True, format="password")]


# -- responses ------------------------------------------------------------------------------

Rank = Annotated[str, enum(tuple(r for _, r in MASK_RANKS))]
DisplayName = Annotated[str, Meta(max_length=MAX_DISPLAY_NAME)]
Gender = Annotated[str, enum(GENDERS)]
AgeRange = Annotated[str, enum(AGE_RANGES)]
Country = Annotated[str, Meta(pattern="^[A-Z]{2}$(?!\n)")]
About = Annotated[str, Meta(max_length=MAX_ABOUT)]


class PrivacyMask(Closed):
    """The member's loyalty rank (null: none yet) and VIP points."""

    rank: Rank | None
    vip_points: Annotated[int, Meta(ge=0)]


class PrivacyProfile(Closed):
    """The member's own profile (null: not given) and mask."""

    display_name: DisplayName | None
    gender: Gender | None
    age_range: AgeRange | None
    country: Country | None
    languages: Languages
    about: About | None
    mask: PrivacyMask


class PrivacySettings(Closed):
    profile_visibility: Annotated[str, enum(PROFILE_VISIBILITIES)]
    mask_visibility: Annotated[str, enum(MASK_VISIBILITIES)]


class PrivacyDownload(View):
    format: Annotated[str, enum(("jasmin-data-download/1",))]
    member_id: str
    generated_at: float
    sources: Annotated[
        dict[str, dict[str, list[dict[str, Any]]]], Meta(description="source name -> table name -> rows")
    ]


class PrivacyErasure(Closed):
    status: Annotated[str, enum(("completed", "pending"))]
    member_id: str
    rows: dict[str, int]


class PrivacySpending(View):
    privates: int
    total_credits: str
    entries: list[dict[str, Any]]
    private_seconds: int | UnsetType = UNSET
    private_credits: str | UnsetType = UNSET
    tip_credits: str | UnsetType = UNSET


class PrivacyMemberProfile(View):
    """The profile fields the viewer may see (null: not given)."""

    display_name: DisplayName | None | UnsetType = UNSET
    gender: Gender | None | UnsetType = UNSET
    age_range: AgeRange | None | UnsetType = UNSET
    country: Country | None | UnsetType = UNSET
    languages: Languages | UnsetType = UNSET
    about: About | None | UnsetType = UNSET


class PrivacyMemberView(View):
    """Performers: username, site, favourite, spending with them; profile and mask only as the member's
    visibility allows. The member itself and support: everything."""

    username: str
    site: str
    member_id: str | UnsetType = UNSET
    favourite: bool | None | UnsetType = UNSET
    spending: PrivacySpending | UnsetType = UNSET
    profile: PrivacyMemberProfile | UnsetType = UNSET
    profile_visibility: Annotated[str, enum(PROFILE_VISIBILITIES)] | UnsetType = UNSET
    mask: PrivacyMask | UnsetType = UNSET
    mask_visibility: Annotated[str, enum(MASK_VISIBILITIES)] | UnsetType = UNSET


# -- the paths table ------------------------------------------------------------------------

ERRORS = {
    400: "Malformed body, unknown field, or a value out of range",
    401: "Missing, malformed, unknown, expired or revoked token; or a wrong password (erasure)",
    403: "forbidden: the caller's role may not do this (profiles are members'; member views are for performers, "
    "support and the member itself)",
    404: "No such member (or it was erased)",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    429: "rate_limited: too many wrong passwords; Retry-After says when to try again",
    503: "Accounts are not enabled on this node, or the database is busy",
}
BODY = (400, 413, 415)
ME = (401, 403, 503)
_DOWNLOAD_HEADERS = {
    "Content-Disposition": {
        "required": True,
        "description": "A file to save, not a page to show",
        "schema": {"type": "string", "pattern": '^attachment; filename="[a-z-]+\\.json"$'},
    },
    "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
}


def _op(*args: Any, **kw: Any) -> Op:
    kw.setdefault("bearer", True)
    return Op(*args, **kw).described(ERRORS)


OPS: tuple[Op, ...] = (
    _op(
        "get",
        "/api/v1/me/profile",
        "getMemberProfile",
        "The member's own profile and mask",
        {200: ("The profile", PrivacyProfile)},
        ME,
    ),
    _op(
        "patch",
        "/api/v1/me/profile",
        "updateMemberProfile",
        "Change profile fields (all optional)",
        {200: ("The profile", PrivacyProfile)},
        (*BODY, *ME),
        body=PrivacyProfilePatch,
    ),
    _op(
        "get",
        "/api/v1/me/privacy",
        "getPrivacySettings",
        "Who sees the profile and the mask",
        {200: ("The settings", PrivacySettings)},
        ME,
    ),
    _op(
        "patch",
        "/api/v1/me/privacy",
        "updatePrivacySettings",
        "Change who sees the profile and the mask",
        {200: ("The settings", PrivacySettings)},
        (*BODY, *ME),
        body=PrivacySettingsPatch,
    ),
    _op(
        "get",
        "/api/v1/me/data",
        "downloadMyData",
        "Everything held about the member, as JSON",
        {200: ("The data download", PrivacyDownload)},
        ME,
        ok_headers={200: _DOWNLOAD_HEADERS},
    ),
    _op(
        "post",
        "/api/v1/me/erasure",
        "forgetMyData",
        "Close the account and erase personal data (financial records are kept under the pseudonymous member"
        " id); the username stays blacklisted for a period",
        {200: ("Erased", PrivacyErasure), 202: ("Recorded; finished by the next retention run", PrivacyErasure)},
        (*BODY, 429, *ME),
        body=PrivacyErasureRequest,
    ),
    _op(
        "get",
        "/api/v1/members/{username}",
        "memberView",
        "A member as the caller may see it",
        {200: ("The member", PrivacyMemberView)},
        (401, 403, 404, 503),
        parameters=(path_param("username", {"type": "string", "pattern": USERNAME_PATTERN, "example": "member1"}),),
    ),
    _op(
        "get",
        "/api/v1/members/by-id/{member_id}",
        "memberViewById",
        "A member by its id (the member_id signaling shows performers)",
        {200: ("The member", PrivacyMemberView)},
        (401, 403, 404, 503),
        parameters=(
            path_param("member_id", {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000]*$"}),
        ),
    ),
)

EXAMPLES: dict[type[Body], dict[str, Any]] = {
    PrivacyProfilePatch: {
        "display_name": "Member One",
        "gender": "",
        "country": "DE",
        "languages": ["en"],
        "about": "Hello",
    },
    PrivacySettingsPatch: {"profile_visibility": "performers_with_private", "mask_visibility": "public"},
    PrivacyErasureRequest: {"password": "not-the-password"},  # an example must not erase the account
}
