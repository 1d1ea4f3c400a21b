"""The accounts store on SQLite and the real PostgreSQL: its own migration track beside the
ledger's, uniqueness and the blacklist decided in the database, sessions by token hash,
profiles written as a unit, and payments idempotent by (member, key)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import AsyncIterator

import pytest

from jasmin_sfu.store.accounts_migrations import LATEST
from jasmin_sfu.store.accounts_repo import (
    ERASED_KEY_PREFIX,
    AccountsStore,
    BlacklistRow,
    ErasureRow,
    MemberProfileRow,
    PaymentRow,
    PerformerRow,
    SessionRow,
    UserRow,
)
from jasmin_sfu.store.errors import DuplicateKeyError, IntegrityStoreError, MigrationError
from jasmin_sfu.store.postgres_accounts import PostgresAccountsStore
from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from tests.realparts import PG_DSN, open_store

T0 = 1_780_000_000 * 1_000_000  # microseconds


@pytest.fixture(params=["sqlite", "postgres"])
async def astore(request: pytest.FixtureRequest) -> AsyncIterator[AccountsStore]:
    async with open_store(
        request.param,
        lambda: SqliteAccountsStore.open(":memory:"),
        lambda schema: PostgresAccountsStore.open(PG_DSN, schema=schema),
    ) as s:
        yield s


def user(uid: str, name: str, role: str = "member", at: int = T0) -> UserRow:
    return UserRow(uid, name, name.casefold(), role, "$argon2id$fake", at)


def ph(store: AccountsStore) -> str:
    return "$1" if isinstance(store, PostgresAccountsStore) else "?"


async def test_accounts_migrations_are_their_own_track(astore: AccountsStore) -> None:
    """Protects sharing one database with the ledger: accounts keep their version in
    accounts_schema_version, so neither store refuses the other's schema_version."""
    assert await astore.schema_version() == LATEST
    raw = astore.execute_raw  # type: ignore[attr-defined]
    if isinstance(astore, PostgresAccountsStore):
        schema = (await raw("SELECT current_schema()"))[0][0]
        ledger = await PostgresLedgerStore.open(PG_DSN, schema=schema)
        try:
            assert await ledger.schema_version() == 2
        finally:
            await ledger.close()
        again = await PostgresAccountsStore.open(PG_DSN, schema=schema)
        assert await again.schema_version() == LATEST
        await again.close()
    else:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "shared.sqlite3")
            ledger_s = await SqliteLedgerStore.open(path)
            acc = await SqliteAccountsStore.open(path)
            assert await ledger_s.schema_version() == 2 and await acc.schema_version() == LATEST
            await acc.close()
            await ledger_s.close()
            acc = await SqliteAccountsStore.open(path)  # reopening applies nothing twice
            assert await acc.schema_version() == LATEST
            await acc.close()


async def test_accounts_migration_refuses_newer_schema(astore: AccountsStore) -> None:
    """Protects an old node from writing into a newer accounts schema."""
    raw = astore.execute_raw  # type: ignore[attr-defined]
    if isinstance(astore, PostgresAccountsStore):
        await raw("INSERT INTO accounts_schema_version (version) VALUES (99)")
        schema = (await raw("SELECT current_schema()"))[0][0]
        with pytest.raises(MigrationError):
            await PostgresAccountsStore.open(PG_DSN, schema=schema)
    else:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.sqlite3")
            s = await SqliteAccountsStore.open(path)
            await s.execute_raw("INSERT INTO accounts_schema_version VALUES (99, 'x')")
            await s.close()
            with pytest.raises(MigrationError):
                await SqliteAccountsStore.open(path)


async def test_usernames_are_unique_regardless_of_case_even_when_racing(astore: AccountsStore) -> None:
    """Protects one owner per name (a performer's name is its show id): the database decides,
    so of two simultaneous registrations exactly one wins."""
    await astore.create_user(user("u1", "Alice"))
    with pytest.raises(DuplicateKeyError):
        await astore.create_user(user("u2", "alice"))
    results = await asyncio.gather(
        *[astore.create_user(user(f"r{i}", "Racer")) for i in range(8)], return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, DuplicateKeyError) for r in results)
    found = await astore.user_by_username("alice")
    assert found is not None and found.id == "u1" and found.username == "Alice"


async def test_blacklisted_names_cannot_be_registered_until_the_entry_lapses(astore: AccountsStore) -> None:
    """Protects the erasure rule: a former username stays blacklisted for a period, then frees up."""
    await astore.blacklist_username(BlacklistRow("gone", "erased", T0, until_at=T0 + 100))
    assert await astore.blacklisted("gone", T0 + 99) is not None
    with pytest.raises(DuplicateKeyError):
        await astore.create_user(user("u1", "Gone", at=T0 + 50))
    assert await astore.user_by_username("gone") is None
    assert await astore.blacklisted("gone", T0 + 100) is None
    await astore.create_user(user("u1", "Gone", at=T0 + 100))
    await astore.blacklist_username(BlacklistRow("forever", "reserved", T0, None))
    assert await astore.blacklisted("forever", T0 * 2) is not None


async def test_sessions_by_token_hash_revocation_and_purge(astore: AccountsStore) -> None:
    """Protects token handling below the service: a session is found only by its hash, revocation
    is once, and the purge removes expired and revoked sessions (guest data retention)."""
    await astore.create_user(user("u1", "bob"))
    await astore.create_session(SessionRow("s1", "h1", "user", "u1", T0, T0 + 10))
    await astore.create_session(SessionRow("s2", "h2", "user", "u1", T0, T0 + 1000))
    await astore.create_session(SessionRow("g1", "hg", "guest", None, T0, T0 + 1000))
    s = await astore.session_by_token_hash("h2")
    assert s is not None and s.id == "s2" and s.user_id == "u1" and s.revoked_at is None
    await astore.confirm_session_adult("g1", T0 + 5)
    g = await astore.session_by_token_hash("hg")
    assert g is not None and g.adult_confirmed_at == T0 + 5
    assert await astore.revoke_session("s2", T0 + 1) is True
    assert await astore.revoke_session("s2", T0 + 2) is False
    assert await astore.revoke_user_sessions("u1", T0 + 3) == 1  # s1; s2 already revoked
    assert await astore.purge_sessions(T0 + 20) == 2
    assert await astore.session_by_token_hash("h1") is None and await astore.session_by_token_hash("hg") is not None
    with pytest.raises(IntegrityStoreError):  # a guest session has no user, a user session has one
        await astore.create_session(SessionRow("bad", "hb", "guest", "u1", T0, T0 + 10))
    with pytest.raises(DuplicateKeyError):
        await astore.create_session(SessionRow("s9", "hg", "guest", None, T0, T0 + 10))


async def test_performer_profile_categories_and_group_are_one_unit(astore: AccountsStore) -> None:
    """Protects profiles: created with the account in one transaction, replaced whole,
    and the database refuses an out-of-range price even if a service bug let one through."""
    await astore.create_user(user("p1", "anna", "performer"), PerformerRow("p1", "Anna", "", 200, False, T0, ("girl",)))
    await astore.create_user(user("p2", "bea", "performer"), PerformerRow("p2", "Bea", "", 300, False, T0))
    grp = PerformerRow("g1", "Duo", "two", 500, True, T0, ("couple", "girl"), ("p1", "p2"))
    await astore.create_user(user("g1", "duo", "performer"), grp)
    assert await astore.performer("g1") == grp
    await astore.put_performer(PerformerRow("p1", "Anna K", "hi", 250, False, T0 + 1, ("fetish", "girl")))
    p1 = await astore.performer("p1")
    assert p1 is not None and p1.categories == ("fetish", "girl") and p1.price_per_minute == 250
    with pytest.raises(IntegrityStoreError):
        await astore.put_performer(PerformerRow("p2", "Bea", "", 0, False, T0 + 1))
    p2 = await astore.performer("p2")
    assert p2 is not None and p2.price_per_minute == 300  # the failed write changed nothing
    with pytest.raises((IntegrityStoreError, DuplicateKeyError)):  # a profile needs its account
        await astore.put_performer(PerformerRow("nobody", "X", "", 100, False, T0))
    # A failed profile rolls the account back with it.
    with pytest.raises(IntegrityStoreError):
        await astore.create_user(user("p3", "cleo", "performer"), PerformerRow("p3", "Cleo", "", -5, False, T0))
    assert await astore.user_by_username("cleo") is None


async def test_payments_are_idempotent_by_member_and_key(astore: AccountsStore) -> None:
    """Protects 'same payment twice = one top-up' at the bottom: the second insert with a key
    returns the first row, racing inserts store one, and only last4/expiry of a card exist."""
    await astore.create_user(user("u1", "carl"))
    first = PaymentRow("tp_1", "u1", "key-00001", "p2999", 2999, "test", "approved", T0, "4242", "12/29")
    assert await astore.insert_payment(first) == (first, True)
    twin = PaymentRow("tp_2", "u1", "key-00001", "p6999", 6999, "test", "approved", T0 + 1)
    assert await astore.insert_payment(twin) == (first, False)
    # Racing twins: one row is stored, and exactly one of them says it stored it.
    races = await asyncio.gather(
        *[
            astore.insert_payment(PaymentRow(f"tp_r{i}", "u1", "key-race", "p2999", 2999, "test", "approved", T0))
            for i in range(6)
        ]
    )
    assert len({r.id for r, _ in races}) == 1 and [stored for _, stored in races].count(True) == 1
    await astore.mark_payment_credited("tp_1", T0 + 5)
    await astore.mark_payment_credited("tp_1", T0 + 9)
    done = await astore.payment("u1", "key-00001")
    assert done is not None and done.status == "credited" and done.credited_at == T0 + 5
    cols = await astore.execute_raw(  # type: ignore[attr-defined]
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'acc_payments'"
        if isinstance(astore, PostgresAccountsStore)
        else "SELECT name FROM pragma_table_info('acc_payments')"
    )
    card_cols = {c[0] for c in cols if "card" in c[0]}
    assert card_cols == {"card_last4", "card_expiry"}
    with pytest.raises(IntegrityStoreError):
        await astore.execute_raw(  # type: ignore[attr-defined]
            f"UPDATE acc_payments SET card_last4 = {ph(astore)} WHERE id = 'tp_1'", ["4242424242424242"]
        )


# -- privacy (migration 2) ------------------------------------------------------------------


async def test_member_profile_round_trip_and_visibility_checked_by_the_database(astore: AccountsStore) -> None:
    """Protects the profile: stored and read back whole, the private defaults apply, and the
    database refuses a visibility value outside the three docs/product.md names."""
    await astore.create_user(user("u1", "dora"))
    assert await astore.member_profile("u1") is None
    row = MemberProfileRow("u1", "Dora", "female", "25-34", "DE", ("de", "en"), "hi", "all_performers", "public", T0)
    await astore.put_member_profile(row)
    assert await astore.member_profile("u1") == row
    await astore.put_member_profile(MemberProfileRow("u1", updated_at=T0 + 1))
    got = await astore.member_profile("u1")
    assert (
        got is not None
        and got.languages == ()
        and (got.profile_visibility, got.mask_visibility) == ("nobody", "private")
    )
    with pytest.raises(IntegrityStoreError):
        await astore.put_member_profile(MemberProfileRow("u1", profile_visibility="everyone", updated_at=T0))


async def _member_with_everything(astore: AccountsStore) -> None:
    await astore.create_user(user("u1", "Erin"))
    await astore.create_user(user("u2", "other"))
    await astore.create_session(SessionRow("s1", "h1", "user", "u1", T0, T0 + 10))
    await astore.create_session(SessionRow("s2", "h2", "user", "u2", T0, T0 + 10))
    await astore.put_member_profile(MemberProfileRow("u1", "Erin E", "female", about="x", updated_at=T0))
    await astore.insert_payment(
        PaymentRow("tp_1", "u1", "key-00001", "p2999", 2999, "test", "approved", T0, "4242", "12/29")
    )


async def test_export_user_holds_every_row_about_the_user_and_no_secret(astore: AccountsStore) -> None:
    """Protects the data download at the bottom: each table's rows about the user, none of another
    user's, and never a password hash or token hash."""
    await _member_with_everything(astore)
    out = await astore.export_user("u1")
    assert [r["id"] for r in out["acc_users"]] == ["u1"] and [r["id"] for r in out["acc_sessions"]] == ["s1"]
    assert out["acc_member_profiles"][0]["display_name"] == "Erin E"
    assert out["acc_payments"][0]["card_last4"] == "4242"
    flat = repr(out)
    assert "argon2" not in flat and "'h1'" not in flat and "u2" not in flat


async def test_erasure_closes_revokes_blacklists_wipes_and_keeps_payments(astore: AccountsStore) -> None:
    """Protects "forget my data" at the bottom: recorded once with the closure, revocation and
    blacklist in one transaction; the wipe keeps the payment under the id and a rerun touches 0."""
    await _member_with_everything(astore)
    assert await astore.begin_erasure(ErasureRow("u1", "member_request", T0 + 1), T0 + 100) is True
    assert await astore.begin_erasure(ErasureRow("u1", "member_request", T0 + 2), T0 + 200) is False
    u = await astore.user_by_id("u1")
    assert u is not None and u.closed_at == T0 + 1 and u.username == "Erin"  # closed, not yet wiped
    s = await astore.session_by_token_hash("h1")
    assert s is not None and s.revoked_at == T0 + 1
    bl = await astore.blacklisted("erin", T0 + 99)
    assert bl is not None and bl.until_at == T0 + 100
    assert await astore.open_erasures() == [ErasureRow("u1", "member_request", T0 + 1)]
    assert await astore.erase_user("u1", T0 + 3) >= 4
    assert await astore.erase_user("u1", T0 + 4) == 0
    u = await astore.user_by_id("u1")
    assert u is not None and u.username_key == ERASED_KEY_PREFIX + "u1" and u.password_hash == "!"
    assert await astore.user_by_username("erin") is None
    assert await astore.member_profile("u1") is None and await astore.session_by_token_hash("h1") is None
    pay = await astore.payment("u1", "key-00001")
    assert pay is not None and pay.amount_cents == 2999 and (pay.card_last4, pay.card_expiry) == (None, None)
    await astore.complete_erasure("u1", T0 + 5)
    assert await astore.open_erasures() == []
    other = await astore.session_by_token_hash("h2")
    assert other is not None and other.revoked_at is None  # nobody else touched
    assert await astore.begin_erasure(ErasureRow("u1", "member_request", T0 + 6), None) is False


async def test_last_purchase_inactivity_and_purges_at_their_boundaries(astore: AccountsStore) -> None:
    """Protects the retention inputs: last purchase or creation per member, inactivity counted from the
    latest login/purchase/creation, guest sessions and lapsed blacklist entries deleted (dry run counts)."""
    await astore.create_user(user("u1", "fay", at=T0))
    await astore.create_user(user("u2", "gil", at=T0 + 10))
    await astore.create_user(user("u3", "hal", at=T0))
    await astore.create_user(user("p1", "ivy", "performer", at=T0), PerformerRow("p1", "Ivy", "", 100, False, T0))
    await astore.insert_payment(PaymentRow("tp_1", "u1", "key-00001", "p2999", 2999, "test", "approved", T0 + 50))
    await astore.record_login("u3", T0 + 40)
    assert await astore.last_purchases() == {"u1": T0 + 50, "u2": T0 + 10, "u3": T0}
    assert await astore.inactive_members(T0 + 10) == []
    assert await astore.inactive_members(T0 + 11) == ["u2"]
    assert await astore.inactive_members(T0 + 41) == ["u2", "u3"]
    assert await astore.inactive_members(T0 + 51) == ["u1", "u2", "u3"]  # never the performer
    await astore.create_session(SessionRow("g1", "hg1", "guest", None, T0, T0 + 10**12))
    await astore.create_session(SessionRow("g2", "hg2", "guest", None, T0 + 5, T0 + 10**12))
    assert await astore.purge_guest_sessions(T0 + 5, dry_run=True) == 1
    assert await astore.purge_guest_sessions(T0 + 5) == 1
    assert await astore.session_by_token_hash("hg1") is None and await astore.session_by_token_hash("hg2") is not None
    await astore.blacklist_username(BlacklistRow("old", "erased", T0, T0 + 100))
    await astore.blacklist_username(BlacklistRow("kept", "reserved", T0, None))
    assert await astore.purge_blacklist(T0 + 99) == 0
    assert await astore.purge_blacklist(T0 + 100, dry_run=True) == 1
    assert await astore.purge_blacklist(T0 + 100) == 1
    assert await astore.blacklisted("kept", T0 * 2) is not None


async def _blacklist_keys(store: AccountsStore) -> list[str]:
    return sorted(
        r[0]
        for r in await store.execute_raw(  # type: ignore[attr-defined]
            "SELECT username_key FROM acc_username_blacklist"
        )
    )


async def test_the_blacklist_keeps_a_keyed_hash_never_the_name(astore: AccountsStore) -> None:
    """Protects issue 11.3: an erased (or blocked) username is kept only as an HMAC under the
    node's secret (acc_secrets, made at the first start), so the table answers 'is this name
    blocked' and nothing else: no row holds the name, the check is case-blind through the
    username key, and registering the name is refused in the database."""
    await astore.create_user(user("u1", "Erin"))
    assert await astore.begin_erasure(ErasureRow("u1", "member_request", T0 + 1), T0 + 100) is True
    await astore.blacklist_username(BlacklistRow("forever", "reserved", T0, None))
    keys = await _blacklist_keys(astore)
    assert len(keys) == 2 and all(k.startswith("h1:") and len(k) == 3 + 64 for k in keys), keys
    assert not any("erin" in k or "forever" in k for k in keys)
    assert await astore.blacklisted("erin", T0 + 99) is not None and await astore.blacklisted("forever", T0) is not None
    assert await astore.blacklisted("otto", T0) is None
    with pytest.raises(DuplicateKeyError):
        await astore.create_user(user("u2", "ERIN", at=T0 + 50))
    [(secret,)] = await astore.execute_raw(  # type: ignore[attr-defined]
        "SELECT value FROM acc_secrets WHERE name = 'username_blacklist'"
    )
    assert len(secret) == 64 and secret not in keys


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_3_hashes_the_plain_blacklist_rows_of_an_older_database(kind: str, tmp_path: object) -> None:
    """Protects the upgrade: a database at accounts version 2 with plain names in the blacklist is
    migrated to keyed hashes (version 3, one transaction, on both dialects): afterwards no row holds
    a name, the names are still blocked, and a lapsed entry still lapses."""
    from jasmin_sfu.store import accounts_migrations as migrations

    v2 = [step for step in migrations.SQLITE if step[0] <= 2]
    plain = [("gone", "erased", T0, T0 + 100), ("forever", "reserved", T0, None)]
    if kind == "sqlite":
        import sqlite3

        from jasmin_sfu.store.sqlite_base import Track, migrate

        path = os.path.join(str(tmp_path), "accounts.sqlite3")
        db = sqlite3.connect(path, isolation_level=None)
        migrate(db, Track("accounts schema", migrations.VERSION_TABLE, v2))
        db.executemany("INSERT INTO acc_username_blacklist VALUES (?, ?, ?, ?)", plain)
        db.close()
        store: AccountsStore = await SqliteAccountsStore.open(path)
        await _check_migrated(store)
        return
    import asyncpg

    from jasmin_sfu.store.pg_base import PgTrack
    from jasmin_sfu.store.pg_base import migrate as pg_migrate
    from tests.realparts import pg_schema

    async with pg_schema() as schema:
        con = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        try:
            await pg_migrate(
                con,
                PgTrack(
                    "accounts schema",
                    migrations.VERSION_TABLE,
                    [s for s in migrations.POSTGRES if s[0] <= 2],
                    0x6A616363,
                ),
            )
            await con.executemany("INSERT INTO acc_username_blacklist VALUES ($1, $2, $3, $4)", plain)
        finally:
            await con.close()
        store = await PostgresAccountsStore.open(PG_DSN, schema=schema)
        await _check_migrated(store)


async def _check_migrated(store: AccountsStore) -> None:
    try:
        assert await store.schema_version() == LATEST >= 3
        keys = await _blacklist_keys(store)
        assert len(keys) == 2 and all(k.startswith("h1:") for k in keys), keys
        assert await store.blacklisted("gone", T0 + 99) is not None
        assert await store.blacklisted("forever", T0 * 2) is not None
        assert await store.purge_blacklist(T0 + 100) == 1 and await store.blacklisted("gone", T0 + 99) is None
    finally:
        await store.close()
