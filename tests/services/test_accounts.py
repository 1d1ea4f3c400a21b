"""The accounts service: registration and login with argon2, tokens that expire and can be
revoked, the 18+ gate, performers and group accounts, the blacklist. Time is a fake clock."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from jasmin_sfu.services.accounts import (
    ADMIN,
    GUEST,
    MEMBER,
    PERFORMER,
    AccountsService,
    AccountsSettings,
    Principal,
    token_hash,
)
from jasmin_sfu.services.errors import (
    AccountNotFoundError,
    AccountValidationError,
    AdultConfirmationRequiredError,
    InvalidCredentialsError,
    InvalidTokenError,
    NotPermittedError,
    NotShowOwnerError,
    UsernameUnavailableError,
)
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from tests.realparts import FakeClock
from tests.support import FAST, fast_hashing

DAY = 86400.0


@pytest.fixture
async def svc(clock: FakeClock) -> AsyncIterator[AccountsService]:
    store = await SqliteAccountsStore.open(":memory:")
    s = AccountsService(store, clock, FAST, fast_hashing())
    yield s
    await s.close()


async def admin(svc: AccountsService) -> Principal:
    await svc.create_admin("boss", "boss-password")
    return (await svc.login("boss", "boss-password")).principal


async def test_register_then_login_and_the_token_speaks_for_the_member(svc: AccountsService) -> None:
    """Protects sign-up and sign-in: the token names the member; only an argon2id hash of the
    password and only a SHA-256 of the token are stored."""
    issued = await svc.register("Mia_22", "correct horse", adult_confirmed=True)
    me = await svc.authenticate(issued.token)
    assert (me.kind, me.username, me.adult_confirmed) == (MEMBER, "Mia_22", True)
    again = await svc.login("mia_22", "correct horse")
    assert again.principal.id == me.id and again.token != issued.token
    row = await svc.store.user_by_username("mia_22")
    assert row is not None and row.password_hash.startswith("$argon2id$") and "correct horse" not in row.password_hash
    assert await svc.store.session_by_token_hash(issued.token) is None
    assert await svc.store.session_by_token_hash(token_hash(issued.token)) is not None


@pytest.mark.parametrize(
    "username,password,field",
    [
        ("ab", "long enough", "username"),
        ("anna\n", "long enough", "username"),  # Python's $ matches before a final newline
        ("has space", "long enough", "username"),
        ("x" * 33, "long enough", "username"),
        ("fine_name", "short", "password"),
        ("fine_name", "x" * 257, "password"),
        ("fine_name", "FINE_NAME", "password"),
        (7, "long enough", "username"),
    ],
)
async def test_bad_usernames_and_passwords_are_refused_by_field(
    svc: AccountsService, username: object, password: str, field: str
) -> None:
    """Protects input rules: each refusal names its field."""
    with pytest.raises(AccountValidationError) as e:
        await svc.register(username, password)
    assert e.value.field == field


async def test_taken_reserved_and_blacklisted_names_are_unavailable(svc: AccountsService, clock: FakeClock) -> None:
    """Protects name ownership: case-insensitive uniqueness, reserved names, and the blacklist
    with its period (docs/product.md: a former username stays blacklisted for a while)."""
    await svc.register("Nina", "password-1")
    for name in ("nina", "NINA", "admin", "Support"):
        with pytest.raises(UsernameUnavailableError):
            await svc.register(name, "password-2")
    await svc.blacklist_username("Oskar", "erased", for_s=30 * DAY)
    with pytest.raises(UsernameUnavailableError):
        await svc.register("oskar", "password-3")
    clock.advance(30 * DAY)
    await svc.register("oskar", "password-3")


async def test_login_failures_do_not_tell_which_part_was_wrong(svc: AccountsService) -> None:
    """Protects against account enumeration: unknown name, wrong password and junk all answer
    the same error."""
    await svc.register("pia", "right password")
    for name, pw in [("pia", "wrong password"), ("nobody", "right password"), ("??", "x"), ("pia", ""), (None, None)]:
        with pytest.raises(InvalidCredentialsError, match="wrong username or password"):
            await svc.login(name, pw)


async def test_tokens_expire_on_the_injected_clock_and_logout_revokes(svc: AccountsService, clock: FakeClock) -> None:
    """Protects session lifetimes: a member token lives session_ttl_s, a guest token
    guest_session_ttl_s, and a revoked token is dead at once while others of the member live."""
    a = await svc.register("quinn", "password-q")
    b = await svc.login("quinn", "password-q")
    guest = await svc.start_guest(adult_confirmed=True)
    await svc.logout(a.principal)
    with pytest.raises(InvalidTokenError, match="revoked"):
        await svc.authenticate(a.token)
    assert (await svc.authenticate(b.token)).username == "quinn"
    clock.advance(FAST.guest_session_ttl_s)
    with pytest.raises(InvalidTokenError, match="expired"):
        await svc.authenticate(guest.token)
    clock.advance(FAST.session_ttl_s - FAST.guest_session_ttl_s - 1)
    assert (await svc.authenticate(b.token)).kind == MEMBER
    clock.advance(1)
    with pytest.raises(InvalidTokenError, match="expired"):
        await svc.authenticate(b.token)
    for junk in ("", "jas_short", "Bearer x", "jas_" + "!" * 43, 42):
        with pytest.raises(InvalidTokenError):
            await svc.authenticate(junk)
    assert await svc.purge_expired() == 3


async def test_adult_confirmation_guest_token_carries_it_member_account_keeps_it_a_year(
    svc: AccountsService, clock: FakeClock
) -> None:
    """Protects the 18+ gate (docs/product.md): required before content; a guest's token carries it,
    a member's account remembers it for a year; performers and admins are verified adults."""
    g = await svc.start_guest()
    p = await svc.authenticate(g.token)
    assert p.kind == GUEST and not p.adult_confirmed
    with pytest.raises(AdultConfirmationRequiredError):
        svc.require_adult(p)
    await svc.confirm_adult(p)
    svc.require_adult(await svc.authenticate(g.token))
    m = await svc.register("rita", "password-r")
    assert not (await svc.authenticate(m.token)).adult_confirmed
    await svc.confirm_adult(m.principal)
    clock.advance(FAST.adult_confirmation_ttl_s - 1)
    svc.require_adult((await svc.login("rita", "password-r")).principal)
    clock.advance(1)
    with pytest.raises(AdultConfirmationRequiredError):
        svc.require_adult((await svc.login("rita", "password-r")).principal)
    boss = await admin(svc)
    assert boss.kind == ADMIN and boss.adult_confirmed


async def test_a_changed_hash_cost_rehashes_at_the_next_login(clock: FakeClock) -> None:
    """Protects raising the argon2 cost later: old hashes are replaced when members log in."""
    store = await SqliteAccountsStore.open(":memory:")
    old = AccountsService(store, clock, FAST, fast_hashing())
    await old.register("sam", "password-s")
    before = await store.user_by_username("sam")
    stronger = AccountsSettings(password_time_cost=2, password_memory_kib=2048, password_parallelism=1)
    new = AccountsService(store, clock, stronger, fast_hashing(stronger))
    await new.login("sam", "password-s")
    after = await store.user_by_username("sam")
    assert before is not None and after is not None
    assert "t=1" in before.password_hash and "t=2" in after.password_hash and "m=2048" in after.password_hash
    await new.login("sam", "password-s")
    old.hashing.close()
    await new.close()


async def test_admins_create_performers_and_group_accounts_with_validated_profiles(svc: AccountsService) -> None:
    """Protects performer accounts: only admins create them; price, categories (nude and
    non-nude never mix) and group members are checked; the profile is public by username."""
    boss = await admin(svc)
    member = (await svc.register("tom", "password-t")).principal
    with pytest.raises(NotPermittedError):
        await svc.create_performer(member, "anna", "password-a", display_name="Anna", price_per_minute=200)
    anna = await svc.create_performer(
        boss, "anna", "password-a", display_name=" Anna ", price_per_minute=200, categories=["lesbian", "girl"]
    )
    assert (anna.display_name, anna.categories, anna.is_group) == ("Anna", ("girl", "lesbian"), False)
    await svc.create_performer(boss, "bea", "password-b", display_name="Bea", price_per_minute=300)
    duo = await svc.create_performer(
        boss, "duo", "password-d", display_name="Duo", price_per_minute=500, group_members=["anna", "Bea"]
    )
    assert duo.is_group and duo.group_members == ("anna", "bea")
    bad = [
        ({"price_per_minute": 0}, "price_per_minute"),
        ({"price_per_minute": True}, "price_per_minute"),
        ({"categories": ["girl", "celebrity"]}, "categories"),
        ({"categories": ["girl", "girl"]}, "categories"),
        ({"categories": ["robot"]}, "categories"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "a\x00b"}, "display_name"),
        ({"group_members": []}, "group_members"),
    ]
    for change, field in bad:
        kw = {"display_name": "X", "price_per_minute": 100, **change}
        with pytest.raises(AccountValidationError) as e:
            await svc.create_performer(boss, "newbie", "password-n", **kw)  # type: ignore[arg-type]
        assert e.value.field == field
    # A well-formed name that is no single performer (a group, unknown, the new account itself) is
    # a missing resource (404), not a malformed request: the OpenAPI document cannot say it.
    for members in (["duo"], ["tom"], ["newbie"]):
        with pytest.raises(AccountNotFoundError, match="group_members"):
            await svc.create_performer(
                boss, "newbie", "password-n", display_name="X", price_per_minute=100, group_members=members
            )
    assert await svc.store.user_by_username("newbie") is None
    trio = await svc.create_performer(
        boss, "trio", "password-t", display_name="Trio", price_per_minute=100, group_members=["anna", "ANNA", "bea"]
    )
    assert trio.group_members == ("anna", "bea")  # a name given twice counts once
    with pytest.raises(AccountNotFoundError):
        await svc.performer_profile("tom")


async def test_profiles_change_only_by_their_performer_or_an_admin(svc: AccountsService) -> None:
    """Protects profiles from other performers; the price set here is the show's price."""
    boss = await admin(svc)
    await svc.create_performer(boss, "anna", "password-a", display_name="Anna", price_per_minute=200)
    await svc.create_performer(boss, "bea", "password-b", display_name="Bea", price_per_minute=300)
    anna = (await svc.login("anna", "password-a")).principal
    bea = (await svc.login("bea", "password-b")).principal
    p = await svc.update_performer_profile(
        anna, "anna", price_per_minute=450, categories=["hot_flirt"], bio="hi\nthere"
    )
    assert (p.price_per_minute, p.categories, p.bio) == (450, ("hot_flirt",), "hi\nthere")
    with pytest.raises(NotPermittedError):
        await svc.update_performer_profile(bea, "anna", price_per_minute=1)
    assert (await svc.update_performer_profile(boss, "anna", display_name="Anna K")).display_name == "Anna K"
    with pytest.raises(AccountNotFoundError):
        await svc.update_performer_profile(boss, "ghost", bio="")


async def test_a_performer_performs_only_in_its_own_show_or_its_groups(svc: AccountsService) -> None:
    """Protects show ownership: show id = the performer's username (exactly), or a group
    account listing it; the profile returned carries the show's price."""
    boss = await admin(svc)
    await svc.create_performer(boss, "anna", "password-a", display_name="Anna", price_per_minute=200)
    await svc.create_performer(boss, "bea", "password-b", display_name="Bea", price_per_minute=300)
    await svc.create_performer(
        boss, "duo", "password-d", display_name="Duo", price_per_minute=500, group_members=["anna"]
    )
    anna = (await svc.login("anna", "password-a")).principal
    bea = (await svc.login("bea", "password-b")).principal
    assert (await svc.performer_for_show(anna, "anna")).price_per_minute == 200
    assert (await svc.performer_for_show(anna, "duo")).price_per_minute == 500
    for who, show in [(bea, "anna"), (bea, "duo"), (anna, "Anna"), (anna, "nobody"), (anna, "boss")]:
        with pytest.raises(NotShowOwnerError):
            await svc.performer_for_show(who, show)
    member = (await svc.register("carl", "password-c")).principal
    with pytest.raises(NotPermittedError):
        await svc.performer_for_show(member, "carl")
    assert (await svc.authenticate((await svc.login("duo", "password-d")).token)).kind == PERFORMER
