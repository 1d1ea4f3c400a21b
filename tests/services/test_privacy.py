"""The privacy service's rules (jasmin_sfu/services/privacy.py) on real stores and an injected
clock, on SQLite and on the real PostgreSQL: who sees what of a member (docs/product.md: profile and
mask visibility, what performers see), the data download, "forget my data" (personal fields gone,
money kept under the pseudonymous id, the former username blacklisted for its period), crash-safe
erasure, and login throttling (services/login_throttle.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jasmin_sfu.services.accounts import AccountsService, Principal
from jasmin_sfu.services.credit_control import CreditControl
from jasmin_sfu.services.errors import (
    AccountNotFoundError,
    ErasureError,
    InvalidCredentialsError,
    InvalidTokenError,
    LoginRateLimitedError,
    NotPermittedError,
    UsernameUnavailableError,
)
from jasmin_sfu.services.ledger import Ledger, wallet_account
from jasmin_sfu.services.login_throttle import LoginThrottle, ThrottleSettings
from jasmin_sfu.services.windows import MAX_KEYS
from jasmin_sfu.services.personal_data import PersonalDataRegistry, RetentionPolicy
from jasmin_sfu.services.privacy import (
    AccountsDataSource,
    LedgerDataSource,
    PrivacyService,
    PrivacySettings,
    mask_rank,
)
from jasmin_sfu.store.accounts_repo import PaymentRow
from jasmin_sfu.store.privacy_ledger import LedgerReads
from tests.realparts import PG_DSN, FakeClock
from tests.support import FAST, service_stores

DAY = 86400
FULL_PROFILE = {
    "display_name": "Mia M",
    "gender": "female",
    "age_range": "25-34",
    "country": "DE",
    "languages": ["de", "en"],
    "about": "about mia",
}


@dataclass
class World:
    clock: FakeClock
    accounts: AccountsService
    ledger: Ledger
    cc: CreditControl
    privacy: PrivacyService
    registry: PersonalDataRegistry
    favourites: set[tuple[str, str]]

    async def member(self, name: str) -> Principal:
        return (await self.accounts.register(name, "password-" + name, adult_confirmed=True)).principal

    async def performer(self, name: str) -> Principal:
        admin = await self.admin()
        await self.accounts.create_performer(
            admin, name, "password-" + name, display_name=name.title(), price_per_minute=200
        )
        return (await self.accounts.login(name, "password-" + name)).principal

    async def admin(self) -> Principal:
        if await self.accounts.store.user_by_username("boss") is None:
            await self.accounts.create_admin("boss", "boss-password")
        return (await self.accounts.login("boss", "boss-password")).principal

    async def buy(self, member: Principal, key: str = "k1") -> None:
        """A purchase as Purchases books it: the payment row (card digits) and the ledger top-up."""
        pay_id = f"pay-{member.id}-{key}"
        await self.accounts.store.insert_payment(
            PaymentRow(
                pay_id, member.id, key, "p2999", 2999, "test", "credited", self.accounts.now_us(), "4242", "12/29"
            )
        )
        await self.ledger.open_member(member.id)
        await self.ledger.top_up(pay_id, member.id, "p2999")

    async def private(self, member: Principal, performer: Principal, seconds: int = 10) -> None:
        await self.ledger.open_performer(performer.id)
        sid = f"t-{uuid.uuid4().hex}"
        await self.cc.authorize(sid, wallet_account(member.id), 200, performer_id=performer.id)
        await self.cc.terminate(sid, 1, seconds)


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    async with service_stores(request.param, tmp_path, "accounts", "ledger") as (astore, lstore):
        async for w in _world(clock, astore, lstore):
            yield w


async def _world(clock: FakeClock, astore: Any, lstore: Any) -> AsyncIterator[World]:
    accounts = AccountsService(astore, clock, FAST)
    ledger = Ledger(lstore, clock)
    await ledger.bootstrap()
    favourites: set[tuple[str, str]] = set()

    async def is_favourite(member_id: str, performer_id: str) -> bool:
        return (member_id, performer_id) in favourites

    history = LedgerReads(lstore)
    registry = PersonalDataRegistry()
    privacy = PrivacyService(
        accounts, registry, PrivacySettings(site="jasmin", username_blacklist_days=180), history, is_favourite
    )
    registry.register(AccountsDataSource(accounts))
    registry.register(LedgerDataSource(history))
    try:
        yield World(clock, accounts, ledger, CreditControl(ledger), privacy, registry, favourites)
    finally:
        await lstore.close()
        await accounts.close()


# -- visibility and the member view --------------------------------------------------------------


async def test_nobody_shows_a_performer_the_username_site_favourite_and_spending_only(world: World) -> None:
    """Protects docs/product.md's 'nobody' (the default): even the performer the member had a paid
    private with and is a favourite of sees only username, site, favourite and spending; no
    profile field, no mask, not the member id."""
    w = world
    mia, anna = await w.member("mia"), await w.performer("anna")
    await w.buy(mia)
    await w.private(mia, anna, 30)
    await w.privacy.update_profile(mia, FULL_PROFILE)
    w.favourites.add((mia.id, anna.id))
    row = await w.privacy.profile(mia)
    assert (row.profile_visibility, row.mask_visibility) == ("nobody", "private")
    view = await w.privacy.member_view(mia.id, anna)
    assert set(view) == {"username", "site", "favourite", "spending"}
    assert view["username"] == "mia" and view["site"] == "jasmin" and view["favourite"] is True
    assert view["spending"]["privates"] == 1 and view["spending"]["private_seconds"] == 30
    flat = json.dumps(view)
    for secret in ("Mia M", "about mia", "DE", "25-34", mia.id, "bronze"):
        assert secret not in flat
    assert await w.privacy.member_view_by_username("MIA", anna) == view  # case-folded name, same view


async def test_performers_with_private_and_all_performers_per_field_group(world: World) -> None:
    """Protects the other levels: 'performers_with_private' shows the profile (or the mask) only to
    a performer with a *paid* private; 'all_performers' / 'public' to every performer; the two
    settings are independent, and spending is always with the viewing performer only."""
    w = world
    max_, bea, cleo = await w.member("max"), await w.performer("bea"), await w.performer("cleo")
    await w.buy(max_)
    await w.private(max_, bea, 60)
    await w.privacy.update_profile(max_, {"display_name": "Max"})
    await w.privacy.update_settings(max_, profile_visibility="performers_with_private", mask_visibility="public")
    with_, without = await w.privacy.member_view(max_.id, bea), await w.privacy.member_view(max_.id, cleo)
    assert with_["profile"]["display_name"] == "Max" and "profile" not in without
    assert with_["mask"] == without["mask"] == {"rank": "bronze", "vip_points": 1}
    assert with_["spending"]["privates"] == 1 and without["spending"]["privates"] == 0
    assert without["favourite"] is False
    await w.privacy.update_settings(
        max_, profile_visibility="all_performers", mask_visibility="performers_with_private"
    )
    with_, without = await w.privacy.member_view(max_.id, bea), await w.privacy.member_view(max_.id, cleo)
    assert without["profile"]["display_name"] == "Max" and "mask" not in without
    assert with_["mask"]["rank"] == "bronze"
    # A private that charged nothing (0 seconds) is not "a private with".
    dora = await w.performer("dora")
    await w.private(max_, dora, 0)
    await w.privacy.update_settings(max_, profile_visibility="performers_with_private")
    assert "profile" not in await w.privacy.member_view(max_.id, dora)


async def test_who_may_see_a_member_at_all(world: World) -> None:
    """Protects 'no other user can see anything': another member and a guest are refused, the
    member itself and support see everything, a closed or unknown member is not found."""
    w = world
    mia, otto = await w.member("mia"), await w.member("otto")
    await w.privacy.update_profile(mia, {"about": "hi"})
    with pytest.raises(NotPermittedError):
        await w.privacy.member_view(mia.id, otto)
    guest = (await w.accounts.start_guest(adult_confirmed=True)).principal
    with pytest.raises(NotPermittedError):
        await w.privacy.member_view(mia.id, guest)
    for viewer in (mia, await w.admin()):
        full = await w.privacy.member_view(mia.id, viewer)
        assert full["profile"]["about"] == "hi" and full["member_id"] == mia.id
        assert full["profile_visibility"] == "nobody" and full["mask"] == {"rank": None, "vip_points": 0}
    anna = await w.performer("anna")
    with pytest.raises(AccountNotFoundError):
        await w.privacy.member_view(anna.id, anna)  # a performer is not a member
    with pytest.raises(AccountNotFoundError):
        await w.privacy.member_view_by_username("x" * 40, anna)
    await w.privacy.erase(mia.id, "member_request")
    with pytest.raises(AccountNotFoundError):
        await w.privacy.member_view(mia.id, anna)


async def test_malformed_member_names_and_ids_are_not_found_on_every_store(world: World) -> None:
    """Protects the member views from input the database cannot hold: PostgreSQL refuses a NUL
    byte in text (a 500 before this was checked), so a name or id that no account can have is
    'not found' before any query, on both stores."""
    w = world
    anna = await w.performer("anna")
    for member_id in ("u_\x00abc", "u_" + "a" * 100, "", "u_\udcff", "u_abc\n"):
        with pytest.raises(AccountNotFoundError):
            await w.privacy.member_view(member_id, anna)
    for name in ("ab\x00c", "mi a", "ab", "é" * 5, "../x", "mia\n"):
        with pytest.raises(AccountNotFoundError):
            await w.privacy.member_view_by_username(name, anna)


async def test_profile_validation_and_clearing(world: World) -> None:
    """Protects the profile's shape: unknown fields, bad codes, control characters and lone surrogates
    (no UTF-8: no store can keep them) are refused,
    '' / [] clear, a performer has no member profile."""
    w = world
    mia = await w.member("mia")
    await w.privacy.update_profile(mia, FULL_PROFILE)
    for bad in (
        {"country": "Germany"},
        {"languages": ["deu"]},
        {"gender": "x"},
        {"display_name": "a\x00b"},
        {"display_name": "a\ud800b"},
        {"about": "lone \udfff surrogate"},
        {"nickname": "x"},
        {"languages": ["de"] * 2},
        {"about": 5},
    ):
        with pytest.raises(Exception) as e:
            await w.privacy.update_profile(mia, bad)
        assert type(e.value).__name__ == "AccountValidationError"
    row = await w.privacy.update_profile(mia, {"display_name": "", "languages": [], "country": ""})
    assert (row.display_name, row.languages, row.country, row.about) == (None, (), None, "about mia")
    with pytest.raises(NotPermittedError):
        await w.privacy.profile(await w.performer("anna"))
    assert [mask_rank(p) for p in (0, 1, 10, 50, 100, 250)] == [None, "bronze", "silver", "gold", "platinum", "diamond"]


# -- data download ---------------------------------------------------------------------------------


async def test_download_holds_every_source_without_secrets(world: World) -> None:
    """Protects the data download: one key per registered source, the accounts rows (user, sessions,
    profile, payments) and the ledger rows of the member's accounts; no password or token hash;
    members only."""
    w = world
    mia, anna = await w.member("mia"), await w.performer("anna")
    await w.buy(mia)
    await w.private(mia, anna)
    await w.privacy.update_profile(mia, {"about": "mine"})
    data = await w.privacy.download(mia)
    assert data["format"] == "jasmin-data-download/1" and data["member_id"] == mia.id
    assert data["generated_at"] == w.clock.now
    assert set(data["sources"]) == {"accounts", "ledger"}
    acc = data["sources"]["accounts"]
    assert acc["acc_member_profiles"][0]["about"] == "mine"
    assert acc["acc_payments"][0]["card_last4"] == "4242"
    assert len(acc["acc_sessions"]) == 1 and "token_hash" not in acc["acc_sessions"][0]
    ledger = data["sources"]["ledger"]
    assert {a["id"] for a in ledger["accounts"]} >= {wallet_account(mia.id)}
    assert len(ledger["cc_sessions"]) == 1 and len(ledger["transfers"]) >= 2
    flat = json.dumps(data, default=str)
    assert "$argon2" not in flat and "password_hash" not in flat
    with pytest.raises(NotPermittedError):
        await w.privacy.download(anna)


# -- forget my data -----------------------------------------------------------------------------------


async def test_erasure_keeps_money_under_the_pseudonym_and_blacklists_the_name_for_its_period(
    world: World,
) -> None:
    """Protects "forget my data": the password is re-checked; afterwards the username, password,
    profile, sessions and card digits are gone, the payment and every ledger row stay under the
    member id (the pseudonym), login fails; the name cannot be registered for 180 days and can
    after; a second erasure changes nothing."""
    w = world
    mia, anna = await w.member("mia"), await w.performer("anna")
    await w.buy(mia)
    await w.private(mia, anna)
    await w.privacy.update_profile(mia, FULL_PROFILE)
    token = (await w.accounts.login("mia", "password-mia")).token
    ledger_before = await w.registry.sources[1].export(mia.id)
    balance_before = await w.ledger.balance(wallet_account(mia.id))
    with pytest.raises(InvalidCredentialsError):
        await w.privacy.request_erasure(mia, "wrong-password")
    with pytest.raises(ErasureError):
        await w.privacy.request_erasure(anna, "password-anna")
    result = await w.privacy.request_erasure(mia, "password-mia")
    assert result.completed and result.rows["accounts"] > 0 and result.rows["ledger"] == 0

    acc = await w.accounts.store.export_user(mia.id)
    user = acc["acc_users"][0]
    assert user["username"] == "[erased]" and user["closed_at"] is not None
    assert acc["acc_member_profiles"] == [] and acc["acc_sessions"] == []
    assert [(p["amount_cents"], p["card_last4"], p["card_expiry"]) for p in acc["acc_payments"]] == [(2999, None, None)]
    assert "Mia M" not in json.dumps(acc, default=str)
    assert await w.registry.sources[1].export(mia.id) == ledger_before  # financial records, untouched
    assert await w.ledger.balance(wallet_account(mia.id)) == balance_before
    assert (await w.ledger.replay()).ok
    with pytest.raises(InvalidCredentialsError):
        await w.accounts.login("mia", "password-mia")
    with pytest.raises(InvalidTokenError):
        await w.accounts.authenticate(token)
    again = await w.privacy.erase(mia.id, "member_request")
    assert again.completed and sum(again.rows.values()) == 0

    w.clock.advance(179 * DAY)
    with pytest.raises(UsernameUnavailableError):
        await w.accounts.register("Mia", "password-new1", adult_confirmed=True)
    w.clock.advance(2 * DAY)  # 181 days: the blacklist has lapsed
    new = await w.member("mia")
    assert new.id != mia.id


async def test_erasure_revokes_every_token_and_tells_the_listeners(world: World) -> None:
    """Protects the hand-off to live connections: every token of the account stops working in the
    erasure's first transaction, and the revocation listeners hear (user id, None)."""
    w = world
    mia = await w.member("mia")
    second = await w.accounts.login("mia", "password-mia")
    heard: list[tuple[str | None, str | None]] = []
    w.accounts.revocation_listeners.append(lambda uid, sid: heard.append((uid, sid)))
    await w.privacy.erase(mia.id, "member_request")
    with pytest.raises(InvalidTokenError):
        await w.accounts.authenticate(second.token)
    assert heard == [(mia.id, None)]


class Flaky:
    """A source whose erase fails until told otherwise (a database down mid-erasure)."""

    name = "flaky"

    def __init__(self) -> None:
        self.fail = True
        self.erased: list[str] = []

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        return {}

    async def erase(self, user_id: str, pseudonym: str) -> int:
        if self.fail:
            raise RuntimeError("database down")
        self.erased.append(user_id)
        return 1

    async def purge(self, policy: RetentionPolicy) -> int:
        return 0


async def test_an_interrupted_erasure_is_recorded_and_resumed(world: World) -> None:
    """Protects crash safety: when a source fails mid-erasure the account is already closed, its
    tokens revoked and its name blacklisted, and the erasure stays open; resuming finishes it
    exactly once (every step idempotent), and a resume with nothing open does nothing."""
    w = world
    mia = await w.member("mia")
    await w.privacy.update_profile(mia, {"about": "x"})
    flaky = Flaky()
    w.registry.register(flaky)
    result = await w.privacy.request_erasure(mia, "password-mia")
    assert not result.completed and "flaky" not in result.rows
    assert [e.user_id for e in await w.accounts.store.open_erasures()] == [mia.id]
    with pytest.raises(InvalidCredentialsError):
        await w.accounts.login("mia", "password-mia")
    with pytest.raises(UsernameUnavailableError):
        await w.accounts.register("mia", "password-new1", adult_confirmed=True)
    assert await w.privacy.resume_erasures() != [] and await w.accounts.store.open_erasures() != []  # still failing
    flaky.fail = False
    done = await w.privacy.resume_erasures()
    assert [(r.user_id, r.completed) for r in done] == [(mia.id, True)]
    assert await w.accounts.store.open_erasures() == [] and flaky.erased == [mia.id]
    assert await w.accounts.store.member_profile(mia.id) is None
    assert await w.privacy.resume_erasures() == []


async def test_a_crash_right_after_the_first_transaction_is_finished_by_resume(world: World) -> None:
    """Protects the step a process death can cut: the erasure record, closure and revocation are
    committed (one transaction) but no source ran; resume_erasures (start-up) does the rest."""
    from jasmin_sfu.store.accounts_repo import ErasureRow

    w = world
    mia = await w.member("mia")
    await w.privacy.update_profile(mia, FULL_PROFILE)
    now = w.accounts.now_us()
    await w.accounts.store.begin_erasure(ErasureRow(mia.id, "member_request", now), now + 180 * DAY * 1_000_000)
    assert await w.accounts.store.member_profile(mia.id) is not None  # the process died here
    [done] = await w.privacy.resume_erasures()
    assert done.completed and await w.accounts.store.member_profile(mia.id) is None
    user = await w.accounts.store.user_by_id(mia.id)
    assert user is not None and user.username == "[erased]"


async def test_wrong_erasure_passwords_are_throttled_apart_from_logins(world: World) -> None:
    """Protects the password re-check against guessing with a stolen token: 10 wrong passwords,
    then even the right one is refused for 15 minutes; the member can still log in meanwhile."""
    w = world
    mia = await w.member("mia")
    for _ in range(10):
        with pytest.raises(InvalidCredentialsError):
            await w.privacy.request_erasure(mia, "wrong-password")
    with pytest.raises(LoginRateLimitedError) as e:
        await w.privacy.request_erasure(mia, "password-mia")
    assert e.value.retry_after_s == 900
    await w.accounts.login("mia", "password-mia")  # its own counter: logins are not locked
    w.clock.advance(901)
    assert (await w.privacy.request_erasure(mia, "password-mia")).completed


# -- login throttling ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_throttle_per_username_slides_and_a_success_clears_it() -> None:
    """Protects the per-name window: 10 failures in 15 minutes lock the name (retry after the
    oldest leaves the window), the lock slides with time, and a success forgets the failures."""
    c = Clock()
    t = LoginThrottle(ThrottleSettings(window_s=900, max_per_username=10, max_per_address=50), c)
    for _ in range(10):
        await t.check("mia", None)
        await t.failed("mia", None)
        c.now += 10  # failures at 1000, 1010, ... 1090
    with pytest.raises(LoginRateLimitedError) as e:
        await t.check("mia", None)
    assert e.value.retry_after_s == 1000 + 900 - 1100  # the first failure leaves at 1900
    await t.check("otto", None)  # other names are free
    c.now = 1900.5
    await t.check("mia", None)  # the oldest left: one more attempt allowed
    await t.failed("mia", None)
    with pytest.raises(LoginRateLimitedError):
        await t.check("mia", None)
    await t.succeeded("mia")
    await t.check("mia", None)


async def test_throttle_per_address_counts_failures_over_many_names() -> None:
    """Protects against one address spraying names: 50 failures over 50 names throttle the address
    (``address_retry_after``), not other addresses; a success clears the name, never the address;
    the window slides. A name failed once from a throttled address is refused there (``check_pair``)."""
    c = Clock()
    t = LoginThrottle(ThrottleSettings(), c)
    for i in range(50):
        await t.failed(f"name{i}", "10.0.0.1")
    assert await t.address_retry_after("10.0.0.1") == 900
    assert await t.address_retry_after("10.0.0.2") is None
    await t.check_name("fresh")  # the address does not throttle a name by itself
    await t.succeeded("name1")  # a success clears the name, not the address
    assert await t.address_retry_after("10.0.0.1") == 900
    with pytest.raises(LoginRateLimitedError):
        await t.check_pair("name2", "10.0.0.1")  # failed from there in the window
    await t.check_pair("fresh", "10.0.0.1")
    c.now += 900
    assert await t.address_retry_after("10.0.0.1") is None


async def test_throttle_memory_is_bounded() -> None:
    """Protects memory under a spray of random names: at most MAX_KEYS names are tracked (the
    oldest dropped first)."""
    c = Clock()
    t = LoginThrottle(ThrottleSettings(), c)
    for i in range(MAX_KEYS + 10):
        await t.failed(f"n{i}", None)
    names = t.windows._tables["name"]  # type: ignore[attr-defined]
    assert len(names) == MAX_KEYS and "n0" not in names and f"n{MAX_KEYS + 9}" in names


async def test_a_throttled_address_refuses_the_sprayer_not_a_neighbour_with_the_right_password(
    world: World,
) -> None:
    """Protects issue 11.18 on both sides. Behind one address (a shared NAT) an attacker fails 50
    logins over many names: then (a) a different member behind that address logs in with its right
    password; (b) the attacker is still slowed: unknown names are refused 429 before any hashing, a
    real name it guesses wrong is refused there from then on (one guess per name per window), and
    its per-name counter still locks the name after 10 failures, even for the right password."""
    w = world
    await w.member("hugo")
    await w.member("gina")
    nat = "192.0.2.1"
    for i in range(50):
        with pytest.raises(InvalidCredentialsError):
            await w.accounts.login(f"nobody{i}", "nope-nope", client=nat)
    calls: list[str] = []
    real = w.accounts.hashing.verify

    async def counting(h: str, p: str) -> bool:
        calls.append(p)
        return await real(h, p)

    w.accounts.hashing.verify = counting  # type: ignore[method-assign]
    # (a) the neighbour: right password, not throttled by name: in.
    assert (await w.accounts.login("hugo", "password-hugo", client=nat)).principal.username == "hugo"
    # (b) the sprayer: unknown names cost nothing and get 429.
    calls.clear()
    for i in range(50, 60):
        with pytest.raises(LoginRateLimitedError) as e:
            await w.accounts.login(f"nobody{i}", "nope-nope", client=nat)
        assert e.value.retry_after_s == 900
    assert calls == []
    # A real name guessed wrong once from the throttled address: refused there, before hashing.
    with pytest.raises(LoginRateLimitedError):
        await w.accounts.login("gina", "guess-1", client=nat)
    assert calls == ["guess-1"]
    with pytest.raises(LoginRateLimitedError):
        await w.accounts.login("gina", "password-gina", client=nat)
    assert calls == ["guess-1"]
    # Elsewhere gina is not throttled; its per-name counter is strict everywhere.
    assert (await w.accounts.login("gina", "password-gina", client="198.51.100.7")).principal.username == "gina"
    for i in range(10):
        with pytest.raises(InvalidCredentialsError):
            await w.accounts.login("hugo", f"guess-{i}", client=f"203.0.113.{i}")
    with pytest.raises(LoginRateLimitedError):
        await w.accounts.login("hugo", "password-hugo", client=nat)
    with pytest.raises(LoginRateLimitedError):
        await w.accounts.login("hugo", "password-hugo", client="203.0.113.99")


async def test_login_is_refused_before_hashing_when_throttled(world: World) -> None:
    """Protects argon2 time under a flood: a throttled attempt never reaches the password hash."""
    w = world
    await w.member("gina")
    for _ in range(10):
        with pytest.raises(InvalidCredentialsError):
            await w.accounts.login("gina", "nope-nope", client="10.1.1.1")
    calls = []
    real = w.accounts.hashing.verify

    async def counting(h: str, p: str) -> bool:
        calls.append(p)
        return await real(h, p)

    w.accounts.hashing.verify = counting  # type: ignore[method-assign]
    with pytest.raises(LoginRateLimitedError):
        await w.accounts.login("gina", "password-gina", client="10.1.1.2")
    assert calls == []
    w.clock.advance(900)
    assert (await w.accounts.login("gina", "password-gina")).principal.username == "gina"
    assert calls == ["password-gina"]


# -- rows naming a person in another column than its author's ----------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def chat_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    from jasmin_sfu.store.postgres_chat import PostgresChatStore
    from jasmin_sfu.store.sqlite_chat import SqliteChatStore
    from tests.realparts import open_store

    async with open_store(
        request.param,
        lambda: SqliteChatStore.open(str(tmp_path / "chat.sqlite3")),
        lambda schema: PostgresChatStore.open(PG_DSN, schema=schema),
    ) as s:
        yield s


async def test_chat_export_holds_the_lines_said_to_the_member_in_its_private(chat_store: Any) -> None:
    """Protects docs/chat.md's 'the export holds every row naming the user' for rows naming the
    member outside the author column: the performer's lines in the member's private
    (``private_to``), a moderation action against it (``target_id``), a report on its line; and
    for a performer the surprises it received (``performer_id``). Another member's private stays
    out of the download."""
    from jasmin_sfu.store.chat_repo import LogRow, MessageRow, ReportRow, TipRow

    s = chat_store
    t = 1_780_000_000_000_000
    await s.add_message(MessageRow("m1", "anna", "u_anna", "anna", "performer", False, None, "hi mia", (), "u_mia", t))
    await s.add_message(MessageRow("m2", "anna", "u_mia", "mia", "member", False, None, "hello", (), "u_mia", t + 1))
    await s.add_message(
        MessageRow("m3", "anna", "u_anna", "anna", "performer", False, None, "hi otto", (), "u_otto", t + 2)
    )
    await s.add_log(LogRow("l1", "anna", "u_anna", "anna", "performer", "mute", "u_mia", "spam", "{}", t + 3))
    await s.add_report(ReportRow("r1", "anna", "m2", "u_otto", "u_mia", "hello", "rude", t + 4))
    await s.add_tip(TipRow("tr1", "anna", "sess1", "u_mia", "mia", "u_anna", 100, True, t + 5))
    mia = await s.export_user("u_mia")
    assert sorted(m["id"] for m in mia["chat_messages"]) == ["m1", "m2"]  # m1: the performer's line to mia
    assert [r["id"] for r in mia["chat_moderation_log"]] == ["l1"]
    assert [r["id"] for r in mia["chat_reports"]] == ["r1"]
    anna = await s.export_user("u_anna")
    assert [r["transfer_id"] for r in anna["chat_tips"]] == ["tr1"]  # surprises the performer received
    assert sorted(m["id"] for m in anna["chat_messages"]) == ["m1", "m3"]


async def test_erasure_ends_live_sessions_before_any_source_erases(world: World) -> None:
    """Protects the order of issue 11.2 on both stores: the account is closed first, then the
    member's live sessions are ended (LiveSessions.end_user returns once its private ended), and
    only then does any source erase; resumed erasures do the same."""
    w = world
    mia = await w.member("mia")
    order: list[str] = []

    class Live:
        async def end_user(self, user_id: str) -> int:
            user = await w.accounts.store.user_by_id(user_id)
            assert user is not None and user.closed_at is not None  # closed before its sessions end
            order.append("end_user:" + user_id)
            return 1

    class Recording(Flaky):
        async def erase(self, user_id: str, pseudonym: str) -> int:
            n = await super().erase(user_id, pseudonym)
            order.append("erase:" + user_id)
            return n

    w.privacy.live = Live()
    source = Recording()
    w.registry.register(source)
    result = await w.privacy.erase(mia.id, "member_request")
    assert not result.completed and order == ["end_user:" + mia.id]  # the source failed: left open
    source.fail = False
    await w.privacy.resume_erasures()
    assert order == ["end_user:" + mia.id, "end_user:" + mia.id, "erase:" + mia.id]
