"""`jasmin-sfu retention [--dry-run]` as an operator runs it: the real command in a subprocess,
on a temp config whose SQLite data dir the test seeded through the real stores.

The command uses the real clock (it is the production entry point), so the seeded rows are
placed relative to it with margins of days: nothing here depends on when the test runs.
The exact boundaries (119/121 days ...) are tested with an injected clock in
tests/services/test_retention.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jasmin_metering.config import OutboxConfig
from jasmin_metering.events import CloudEvent, event_id, rfc3339_us
from jasmin_metering.outbox import Outbox
from jasmin_sfu.services.accounts import AccountsService, AccountsSettings
from jasmin_sfu.services.ledger import wallet_account
from jasmin_sfu.store.accounts_repo import PaymentRow
from jasmin_sfu.store.chat_repo import MessageRow
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_chat import SqliteChatStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from jasmin_sfu.store.sqlite_social import SqliteSocialStore
from tests.realparts import FakeClock

DAY = 86400
US = 1_000_000


def _cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JASMIN_")}
    cmd = [sys.executable, "-m", "jasmin_sfu", "retention", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _config(tmp: Path, data: Path, extra: str = "") -> Path:
    p = tmp / "jasmin.toml"
    p.write_text(f"""
[accounts]
data_dir = "{data}"
[billing]
data_dir = "{data}"
[log]
level = "warning"
{extra}
""")
    return p


def _usage_event(member_id: str, at: float) -> CloudEvent:
    sid = "node1-" + member_id
    t = rfc3339_us(int(at * US))
    return CloudEvent(
        id=event_id(sid, 1),
        source="urn:jasmin:session:" + sid,
        type="com.jasmin.usage.v1",
        time=t,
        sequence="000000000001",
        partitionkey="wallet/" + wallet_account(member_id),
        subject="member/" + member_id,
        recordedtime=t,
        data={"member_id": member_id, "units": 1},
    )


def _line(n: int, author: str, name: str, kind: str, at: float) -> MessageRow:
    return MessageRow(f"m{n}", "anna", author, name, kind, False, None, f"line {n}", (), None, int(at * US))


async def _seed(data: Path) -> dict[str, str]:
    """An inactive member, a lapsed buyer, a recent buyer, an old and a new guest; their chat
    lines and (acked) usage events. Returns the ids by name."""
    now = time.time()
    clock = FakeClock(now - 400 * DAY)
    acc_path = str(data / "accounts.sqlite3")
    store = await SqliteAccountsStore.open(acc_path)
    accounts = AccountsService(
        store, clock, AccountsSettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1)
    )
    ids: dict[str, str] = {}
    try:
        ids["oldie"] = (await accounts.register("oldie", "password-oldie", adult_confirmed=True)).principal.id
        clock.now = now - 300 * DAY
        ids["lapsed"] = (await accounts.register("lapsed", "password-lapsed", adult_confirmed=True)).principal.id
        ids["buyer"] = (await accounts.register("buyer", "password-buyer", adult_confirmed=True)).principal.id
        for name, days in (("lapsed", 130), ("buyer", 10)):
            await store.insert_payment(
                PaymentRow(
                    f"pay-{name}",
                    ids[name],
                    f"key-{name}",
                    "p2999",
                    2999,
                    "test",
                    "credited",
                    int((now - days * DAY) * US),
                )
            )
        await store.record_login(ids["lapsed"], int((now - DAY) * US))  # active, but no recent purchase
        clock.now = now - 20 * DAY
        await accounts.start_guest(adult_confirmed=True)
        clock.now = now - 3600  # within its 1-day token: neither guest data nor expired
        await accounts.start_guest(adult_confirmed=True)
    finally:
        await accounts.close()
    chat = await SqliteChatStore.open(str(data / "chat.sqlite3"))
    try:
        await chat.add_message(_line(1, ids["lapsed"], "lapsed", "member", now - 130 * DAY))
        await chat.add_message(_line(2, ids["buyer"], "buyer", "member", now - 100 * DAY))
    finally:
        await chat.close()
    social = await SqliteSocialStore.open(str(data / "social.sqlite3"), acc_path)
    await social.close()
    ledger = await SqliteLedgerStore.open(str(data / "ledger.sqlite3"))
    await ledger.close()
    outbox = Outbox(OutboxConfig(path=str(data / "billing-outbox.sqlite3")))
    try:
        outbox.append([_usage_event(ids["lapsed"], now - 130 * DAY)])
        outbox.append([_usage_event(ids["buyer"], now - 10 * DAY)])
        outbox.ack("file", outbox.max_pos())  # delivered to the only sink: retention may delete
    finally:
        outbox.close()
    return ids


def _snapshot(data: Path) -> dict[str, object]:
    """Every row of every table of every SQLite file (as SQL), and every other file's bytes."""
    out: dict[str, object] = {}
    for f in sorted(data.iterdir()):
        if f.name.endswith(".sqlite3"):
            db = sqlite3.connect(f)
            try:
                out[f.name] = list(db.iterdump())
            finally:
                db.close()
        elif not f.name.endswith(("-wal", "-shm")):
            out[f.name] = f.read_bytes()
    return out


def _counts(data: Path) -> dict[tuple[str, str], int]:
    out = {}
    for f in sorted(data.glob("*.sqlite3")):
        db = sqlite3.connect(f)
        try:
            for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                out[(f.name, t)] = int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
        finally:
            db.close()
    return out


def _table(stdout: str) -> dict[tuple[str, str], str]:
    """(category, source) -> the count column of the printed table."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+(?: \S+)*)\s{2,}(\S+)\s+(\S+)\s{2}", line)
        if m and m.group(1) != "CATEGORY":
            rows[(m.group(1), m.group(2))] = m.group(3)
    return rows


def _one(data: Path, file: str, sql: str, *args: object) -> object:
    db = sqlite3.connect(data / file)
    try:
        row = db.execute(sql, args).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def test_retention_command_dry_run_changes_nothing_then_deletes_per_category(tmp_path: Path) -> None:
    """Protects the operator's command: --dry-run prints what would go per category and leaves
    every byte of every database as it was; the real run deletes exactly that (an inactive
    account closed and erased, a guest past 15 days, a lapsed buyer's chat log and usage event)
    and keeps the recent buyer's; a second run finds nothing; exit code 0 each time."""
    data = tmp_path / "data"
    data.mkdir()
    ids = asyncio.run(_seed(data))
    cfg = _config(tmp_path, data)
    before, counts_before = _snapshot(data), _counts(data)

    dry = _cli("--dry-run", config=cfg)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was changed" in dry.stdout and "WOULD DELETE" in dry.stdout
    t = _table(dry.stdout)
    assert t[("inactive accounts", "accounts")] == "1"
    assert t[("guest data", "accounts")] == "1"
    assert t[("chat logs and usage", "billing_usage")] == "1"
    assert t[("chat logs and usage", "chat")] == "?"  # chat cannot count without deleting
    assert t[("identity data", "-")] == "0" and t[("financial records", "ledger")] == "0"
    assert _counts(data) == counts_before
    assert _snapshot(data) == before

    run = _cli(config=cfg)
    assert run.returncode == 0, run.stderr
    assert "dry run" not in run.stdout and "DELETED" in run.stdout
    t = _table(run.stdout)
    assert t[("inactive accounts", "accounts")] == "1"
    assert t[("guest data", "accounts")] == "1"
    assert t[("chat logs and usage", "billing_usage")] == "1"
    assert t[("chat logs and usage", "chat")] == "1"
    # What went and what stayed, in the databases themselves.
    assert (
        _one(data, "accounts.sqlite3", "SELECT reason FROM acc_erasures WHERE user_id = ?", ids["oldie"]) == "inactive"
    )
    assert _one(data, "accounts.sqlite3", "SELECT username FROM acc_users WHERE id = ?", ids["oldie"]) == "[erased]"
    assert _one(data, "accounts.sqlite3", "SELECT closed_at FROM acc_users WHERE id = ?", ids["lapsed"]) is None
    assert _one(data, "accounts.sqlite3", "SELECT count(*) FROM acc_sessions WHERE kind = 'guest'") == 1
    assert _one(data, "chat.sqlite3", "SELECT count(*) FROM chat_messages WHERE id = 'm1'") == 0
    assert _one(data, "chat.sqlite3", "SELECT count(*) FROM chat_messages WHERE id = 'm2'") == 1
    events = _one(data, "billing-outbox.sqlite3", "SELECT group_concat(CAST(body AS TEXT)) FROM outbox_events")
    assert isinstance(events, str) and ids["buyer"] in events and ids["lapsed"] not in events
    # The financial record of the lapsed buyer stays.
    assert _one(data, "accounts.sqlite3", "SELECT count(*) FROM acc_payments WHERE user_id = ?", ids["lapsed"]) == 1

    again = _cli(config=cfg)
    assert again.returncode == 0, again.stderr
    t = _table(again.stdout)
    assert all(v == "0" for (cat, _src), v in t.items() if cat != "expired sessions"), again.stdout


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[privacy]\nusage_retention_days = 200", "usage_retention_days"),
        ("[privacy]\ninactive_account_days = 30", "inactive_account_days"),
        ("[privacy\n", "jasmin.toml"),
    ],
)
def test_retention_command_refuses_a_bad_config(tmp_path: Path, extra: str, needle: str) -> None:
    """Protects against a config that would break docs/product.md's limits or cannot be read: a clear
    config error naming the key, exit code 2, and nothing run (no database created)."""
    data = tmp_path / "data"
    data.mkdir()
    r = _cli(config=_config(tmp_path, data, extra))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "config error" in r.stderr and needle in r.stderr
    assert r.stdout == "" and list(data.iterdir()) == []
    missing = _cli(config=tmp_path / "nope.toml")
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr


def test_retention_command_fails_clearly_without_an_accounts_database(tmp_path: Path) -> None:
    """Protects against a wrong data_dir: no empty databases are created, the error says which
    directory was looked at, exit code 1."""
    data = tmp_path / "empty"
    data.mkdir()
    r = _cli("--dry-run", config=_config(tmp_path, data))
    assert r.returncode == 1 and "no accounts database" in r.stderr and str(data) in r.stderr
    assert list(data.iterdir()) == []
    off_cfg = tmp_path / "off.toml"
    off_cfg.write_text('[accounts]\nenabled = false\ntrust_client_ids = true\n[log]\nlevel = "warning"\n')
    off = _cli(config=off_cfg)
    assert off.returncode == 1 and "accounts.enabled is false" in off.stderr


def test_cli_module_runs_as_a_script(tmp_path: Path) -> None:
    """Protects ``python -m jasmin_sfu.cli``: the module's ``__main__`` block must come after the
    helpers it dispatches to (it stood before them, so every subcommand died with a NameError)."""
    data = tmp_path / "empty"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JASMIN_")}
    r = subprocess.run(
        [sys.executable, "-m", "jasmin_sfu.cli", "retention", "--dry-run", "--config", str(_config(tmp_path, data))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "NameError" not in r.stderr, r.stderr
    assert r.returncode == 1 and "no accounts database" in r.stderr
