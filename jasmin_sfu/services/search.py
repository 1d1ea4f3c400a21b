"""Advanced search of performers: the attributes, their enums, the filters, sorting and paging.

docs/product.md's filters: hair colour, build, age, sexual preference, ethnicity,
spoken languages, camera quality, per-minute price, category, and the member's
own rating (My Rating, seen by that member only); plus online status and a
name match. Everything here is pure: the service gathers the catalog (accounts'
profiles, the attributes, the member's ratings and favourites, who is live)
and this module filters, sorts and pages it.

Filter semantics: within one attribute the values are alternatives (``build=
petite&build=slim``: either; the parameter is repeated, never comma-joined); different attributes must all hold. A performer
that never set an attribute does not match a filter on it. ``min_rating`` keeps
performers the member rated at least that many stars.

Paging is by offset (``limit`` 1-100, ``offset`` up to 10,000) over a total
order: the chosen sort, then the username, so a page boundary never drops or
repeats a performer while nothing changes. The catalog is filtered in memory,
O(performers) per search: fine to tens of thousands; beyond that the filters
belong in SQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from jasmin_sfu.services.accounts import CATEGORIES
from jasmin_sfu.services.errors import SocialValidationError

# The enums (docs/social.md). Stored as given; new values need a code change,
# so a typo in a PATCH is refused rather than becoming an unsearchable value.
HAIR_COLOURS = ("black", "blonde", "brown", "red", "grey", "other")
BUILDS = ("petite", "slim", "athletic", "average", "curvy", "large")
SEXUAL_PREFERENCES = ("straight", "bisexual", "gay", "lesbian")
ETHNICITIES = ("asian", "black", "latin", "middle_eastern", "white", "mixed", "other")
CAMERA_QUALITIES = ("sd", "hd", "full_hd", "uhd")
MIN_AGE, MAX_AGE = 18, 99
# ISO 639-1 codes, lower case.
LANGUAGE_RE = re.compile(r"^[a-z]{2}\Z")
MAX_LANGUAGES = 12
# A preset's language filter (alternatives: any of them).
MAX_PRESET_LANGUAGES = 20

ENUM_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_colour": HAIR_COLOURS,
    "build": BUILDS,
    "sexual_preference": SEXUAL_PREFERENCES,
    "ethnicity": ETHNICITIES,
    "camera_quality": CAMERA_QUALITIES,
}
SORTS = ("online_first", "name", "price_asc", "price_desc", "rating_desc")
DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET = 20, 100, 10_000
MAX_QUERY_CHARS = 64
MIN_PRICE, MAX_PRICE = 1, 1_000_000


@dataclass(frozen=True)
class Attributes:
    """A performer's search attributes; None (or empty languages): not given."""

    hair_colour: str | None = None
    build: str | None = None
    age: int | None = None
    sexual_preference: str | None = None
    ethnicity: str | None = None
    camera_quality: str | None = None
    languages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "hair_colour": self.hair_colour,
            "build": self.build,
            "age": self.age,
            "sexual_preference": self.sexual_preference,
            "ethnicity": self.ethnicity,
            "camera_quality": self.camera_quality,
            "languages": list(self.languages),
        }


def update_attributes(current: Attributes, changes: Mapping[str, Any]) -> Attributes:
    """``current`` with ``changes`` applied, validated; a ``None`` value clears an attribute."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ENUM_ATTRIBUTES:
            allowed = ENUM_ATTRIBUTES[name]
            if value is not None and (not isinstance(value, str) or value not in allowed):
                raise SocialValidationError(name, f"one of {', '.join(allowed)}")
            out[name] = value
        elif name == "age":
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not MIN_AGE <= value <= MAX_AGE
            ):
                raise SocialValidationError("age", f"an integer {MIN_AGE}..{MAX_AGE}")
            out[name] = value
        elif name == "languages":
            out[name] = check_languages(value if value is not None else [])
        else:
            raise SocialValidationError(name, "unknown attribute")
    return replace(current, **out)


def check_languages(value: Any) -> tuple[str, ...]:
    """A list of ISO 639-1 codes, deduplicated and sorted."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and LANGUAGE_RE.match(v) for v in value):
        raise SocialValidationError("languages", "a list of two-letter ISO 639-1 codes, lower case")
    langs = tuple(sorted(set(value)))
    if len(value) > MAX_LANGUAGES:
        raise SocialValidationError("languages", f"at most {MAX_LANGUAGES}")
    return langs


@dataclass(frozen=True)
class SearchFilters:
    """One search: filters (empty = any), sort and page."""

    q: str | None = None
    hair_colour: frozenset[str] = frozenset()
    build: frozenset[str] = frozenset()
    sexual_preference: frozenset[str] = frozenset()
    ethnicity: frozenset[str] = frozenset()
    camera_quality: frozenset[str] = frozenset()
    category: frozenset[str] = frozenset()
    language: frozenset[str] = frozenset()
    age_min: int | None = None
    age_max: int | None = None
    price_min: int | None = None
    price_max: int | None = None
    online: bool | None = None
    min_rating: int | None = None
    favourites_only: bool = False
    sort: str = "online_first"
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def query_dict(self) -> dict[str, Any]:
        """The filters (not the page) as a JSON-ready object: what a preset stores."""
        out: dict[str, Any] = {}
        for name in _MULTI:
            values = getattr(self, name)
            if values:
                out[name] = sorted(values)
        for name in _INTS + ("q",):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.online is not None:
            out["online"] = self.online
        if self.favourites_only:
            out["favourites_only"] = True
        if self.sort != "online_first":
            out["sort"] = self.sort
        return out


_MULTI = ("hair_colour", "build", "sexual_preference", "ethnicity", "camera_quality", "category", "language")
_INTS = ("age_min", "age_max", "price_min", "price_max", "min_rating")
_BOOLS = ("online", "favourites_only")
_RANGES: dict[str, tuple[int, int]] = {
    "age_min": (MIN_AGE, MAX_AGE),
    "age_max": (MIN_AGE, MAX_AGE),
    "price_min": (MIN_PRICE, MAX_PRICE),
    "price_max": (MIN_PRICE, MAX_PRICE),
    "min_rating": (1, 5),
    "limit": (1, MAX_LIMIT),
    "offset": (0, MAX_OFFSET),
}
QUERY_KEYS = frozenset(_MULTI + _INTS + _BOOLS + ("q", "sort", "limit", "offset"))
PRESET_KEYS = QUERY_KEYS - {"limit", "offset"}


def _allowed(name: str) -> tuple[str, ...] | None:
    if name in ENUM_ATTRIBUTES:
        return ENUM_ATTRIBUTES[name]
    if name == "category":
        return CATEGORIES
    return None


def parse_filters(params: Mapping[str, Sequence[Any]], base: SearchFilters | None = None) -> SearchFilters:
    """Filters from query parameters (name -> the values given) or a preset's JSON, over ``base``.

    Values may be strings (a query string) or JSON scalars (a preset). Unknown
    names and bad values are ``SocialValidationError``s naming the parameter.
    """
    f = base or SearchFilters()
    changes: dict[str, Any] = {}
    for name, values in params.items():
        if name not in QUERY_KEYS:
            raise SocialValidationError(name, "unknown search parameter")
        vals = list(values)
        if name in _MULTI:
            allowed = _allowed(name)
            items: set[str] = set()
            for part in vals:
                if not isinstance(part, str) or not part:
                    raise SocialValidationError(name, "text values")
                if allowed is not None and part not in allowed:
                    raise SocialValidationError(name, f"one of {', '.join(allowed)}")
                if allowed is None and not LANGUAGE_RE.match(part):
                    raise SocialValidationError(name, "two-letter ISO 639-1 codes, lower case")
                items.add(part)
            changes[name] = frozenset(items)
            continue
        if len(vals) != 1:
            raise SocialValidationError(name, "give it once")
        (v,) = vals
        if name in _INTS or name in ("limit", "offset"):
            n = _int(name, v)
            lo, hi = _RANGES[name]
            if not lo <= n <= hi:
                raise SocialValidationError(name, f"{lo}..{hi}")
            changes[name] = n
        elif name in _BOOLS:
            changes[name] = _bool(name, v)
        elif name == "sort":
            if v not in SORTS:
                raise SocialValidationError("sort", f"one of {', '.join(SORTS)}")
            changes[name] = v
        elif name == "q":
            if not isinstance(v, str) or not 1 <= len(v) <= MAX_QUERY_CHARS:
                raise SocialValidationError("q", f"1-{MAX_QUERY_CHARS} characters")
            changes[name] = v
    # A minimum above its maximum is an empty range: it matches no performer (not an error: the
    # OpenAPI document cannot say "min <= max", so a request it allows must be answered).
    return replace(f, **changes)


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise SocialValidationError(name, "an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,9}", v):
        return int(v)
    raise SocialValidationError(name, "an integer")


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise SocialValidationError(name, "true or false")


def preset_query(value: Any) -> str:
    """A preset's filters, validated, as canonical JSON (no paging)."""
    if not isinstance(value, dict):
        raise SocialValidationError("query", "an object of search filters")
    params: dict[str, list[Any]] = {}
    for key, v in value.items():
        if key not in PRESET_KEYS:
            raise SocialValidationError("query", f"{str(key)[:64]}: not a search filter")
        # Stricter than a query string: JSON types as documented (lists for the multi-valued
        # filters, integers, booleans), never text standing in for them.
        if key in _MULTI:
            allowed = _allowed(key)
            most = len(allowed) if allowed is not None else MAX_PRESET_LANGUAGES
            if not isinstance(v, list) or len(v) > most:
                raise SocialValidationError(f"query.{key}", f"a list of at most {most}")
        elif key in _INTS:
            if not isinstance(v, int) or isinstance(v, bool):
                raise SocialValidationError(f"query.{key}", "an integer")
        elif key in _BOOLS:
            if not isinstance(v, bool):
                raise SocialValidationError(f"query.{key}", "true or false")
        elif not isinstance(v, str):
            raise SocialValidationError(f"query.{key}", "text")
        params[key] = v if isinstance(v, list) else [v]
    return json.dumps(parse_filters(params).query_dict(), sort_keys=True, separators=(",", ":"))


def preset_filters(query: str) -> dict[str, list[Any]]:
    """A stored preset's filters as parameters for ``parse_filters``."""
    data = json.loads(query)
    return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}


@dataclass(frozen=True)
class Candidate:
    """One performer as search sees it."""

    user_id: str
    username: str
    display_name: str
    price_per_minute: int
    categories: tuple[str, ...]
    attributes: Attributes
    online: bool
    my_rating: int | None
    favourite: bool


@dataclass(frozen=True)
class SearchPage:
    """A page of results and where the next starts."""

    results: tuple[Candidate, ...]
    total: int
    offset: int
    limit: int
    next_offset: int | None = None
    applied: dict[str, Any] = field(default_factory=dict)


def matches(c: Candidate, f: SearchFilters) -> bool:
    """Whether ``c`` passes every filter of ``f``."""
    a = c.attributes
    for name in ENUM_ATTRIBUTES:
        wanted = getattr(f, name)
        if wanted and getattr(a, name) not in wanted:
            return False
    if f.category and not f.category & set(c.categories):
        return False
    if f.language and not f.language & set(a.languages):
        return False
    if f.age_min is not None and (a.age is None or a.age < f.age_min):
        return False
    if f.age_max is not None and (a.age is None or a.age > f.age_max):
        return False
    if f.price_min is not None and c.price_per_minute < f.price_min:
        return False
    if f.price_max is not None and c.price_per_minute > f.price_max:
        return False
    if f.online is not None and c.online != f.online:
        return False
    if f.min_rating is not None and (c.my_rating is None or c.my_rating < f.min_rating):
        return False
    if f.favourites_only and not c.favourite:
        return False
    if f.q is not None:
        needle = f.q.casefold()
        if needle not in c.username.casefold() and needle not in c.display_name.casefold():
            return False
    return True


def _key(sort: str, c: Candidate) -> tuple[Any, ...]:
    name = c.username.casefold()
    if sort == "price_asc":
        return (c.price_per_minute, name)
    if sort == "price_desc":
        return (-c.price_per_minute, name)
    if sort == "rating_desc":
        # Unrated last; then by name.
        return (-(c.my_rating or 0), name)
    if sort == "name":
        return (name,)
    return (not c.online, name)


def search(candidates: Iterable[Candidate], f: SearchFilters) -> SearchPage:
    """Filter, sort and page."""
    hits = sorted((c for c in candidates if matches(c, f)), key=lambda c: _key(f.sort, c))
    page = tuple(hits[f.offset : f.offset + f.limit])
    nxt = f.offset + f.limit if f.offset + f.limit < len(hits) else None
    return SearchPage(page, len(hits), f.offset, f.limit, nxt, f.query_dict())
