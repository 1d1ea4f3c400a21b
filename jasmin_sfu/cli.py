"""Command line: ``jasmin-sfu --version``, ``serve [--config FILE]``, ``check-config``, ``create-admin USERNAME``,
``retention [--dry-run]``, ``vip-awards [--period YYYY-MM-DD] [--dry-run]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Coroutine

from jasmin_sfu import __version__
from jasmin_sfu.config import Config, ConfigError, load_config
from jasmin_sfu.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jasmin-sfu", description="jasmin-sfu media node")
    parser.add_argument("--version", action="version", version=f"jasmin-sfu {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="run the daemon")
    serve_p.add_argument("--config", help="TOML config file (default: $JASMIN_CONFIG)")
    serve_p.add_argument("--port", type=int, help="override server.port")
    sub.add_parser("check-config", help="load and validate the config, print it").add_argument("--config")
    admin_p = sub.add_parser("create-admin", help="create a support/admin account; the password is read from stdin")
    admin_p.add_argument("username")
    admin_p.add_argument("--config")
    ret_p = sub.add_parser(
        "retention", help="run the privacy retention jobs once and print what was deleted per category"
    )
    ret_p.add_argument("--config")
    ret_p.add_argument("--dry-run", action="store_true", help="change nothing; print what would be deleted")
    vip_p = sub.add_parser(
        "vip-awards", help="pay the VIP free credits of the due period (1st/16th) once; print who got what"
    )
    vip_p.add_argument("--config")
    vip_p.add_argument("--period", help="the period's first day, YYYY-MM-DD (a 1st or 16th); default: the due one")
    vip_p.add_argument("--dry-run", action="store_true", help="pay nothing; print the ranking")
    args = parser.parse_args(argv)
    command = args.command or "serve"
    try:
        cfg = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"jasmin-sfu: config error: {exc}", file=sys.stderr)
        return 2
    if command == "check-config":
        print(cfg)
        return 0
    if command == "create-admin":
        return _create_admin(cfg, args.username)
    if command == "retention":
        return _retention(cfg, args.dry_run)
    if command == "vip-awards":
        return _vip_awards(cfg, args.period, args.dry_run)
    if getattr(args, "port", None) is not None:
        import dataclasses

        cfg = cfg.replace(server=dataclasses.replace(cfg.server, port=args.port))
    setup_logging(cfg.log.level, cfg.log.format)
    # The daemon forwards and never decodes: aiortc's PyAV import (FFmpeg, ~25 MB of
    # RSS per process) gets placeholders (jasmin_sfu/media/av_placeholder.py).
    from jasmin_sfu.media import av_placeholder

    if not av_placeholder.install():
        import logging

        logging.getLogger(__name__).warning("PyAV was imported before serve: it stays loaded")
    import uvloop

    if cfg.server.workers != 1:
        # One media worker process per core behind this one (docs/workers.md).
        from jasmin_sfu.supervisor import supervise

        return uvloop.run(supervise(cfg, getattr(args, "config", None)))
    from jasmin_sfu.app import serve

    return uvloop.run(serve(cfg))


def _create_admin(cfg: Config, username: str) -> int:
    """The first admin has to come from somewhere: here, with direct access to the accounts store."""
    import asyncio
    import getpass
    import time

    from jasmin_sfu.services.accounts import open_accounts
    from jasmin_sfu.services.errors import AccountsError

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")

    async def go() -> str:
        accounts = await open_accounts(cfg.accounts, time.time)
        try:
            return await accounts.create_admin(username, password)
        finally:
            await accounts.close()

    try:
        user_id = asyncio.run(go())
    except AccountsError as exc:
        print(f"jasmin-sfu: {exc}", file=sys.stderr)
        return 2
    print(f"created admin {username} ({user_id})")
    return 0


def _retention(cfg: Config, dry_run: bool) -> int:
    """One retention run over the node's stores (docs/privacy.md); safe beside a running daemon."""
    from jasmin_sfu.services.retention import format_report, open_offline

    setup_logging(cfg.log.level, cfg.log.format)

    async def go() -> str:
        stack = await open_offline(cfg)
        try:
            report = await stack.retention.run(dry_run=dry_run)
        finally:
            await stack.close()
        return format_report(report, stack.retention.settings)

    return _print_run("retention", go)


def _vip_awards(cfg: Config, period: str | None, dry_run: bool) -> int:
    """One VIP award run (docs/money.md): safe beside running daemons, a paid period is a no-op.

    Exit status: 0 paid or already paid, 1 failed (a conflict: the period was paid to another
    list), 2 bad arguments.
    """
    import datetime as _dt
    import os
    import time

    from jasmin_sfu.services.ledger import Ledger
    from jasmin_sfu.shows.billing import vip_job

    setup_logging(cfg.log.level, cfg.log.format)
    day = None
    if period is not None:
        try:
            day = _dt.date.fromisoformat(period)
        except ValueError:
            day = None
        if day is None or day.day not in (1, 16):
            print(f"jasmin-sfu: --period {period!r} is not a YYYY-MM-DD 1st or 16th", file=sys.stderr)
            return 2

    async def go() -> str:
        b = cfg.billing
        store: Any
        if b.ledger_dsn:
            from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore

            store = await PostgresLedgerStore.open(b.ledger_dsn)
        else:
            from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

            # A ledger that does not exist holds nothing to rank, and is not created here:
            # a wrong data_dir must not grow an empty ledger (as retention refuses too).
            path = os.path.join(b.data_dir, "ledger.sqlite3")
            if not os.path.exists(path):
                raise ValueError(f"no ledger database in {os.path.abspath(b.data_dir)!r}: is billing.data_dir right?")
            store = await SqliteLedgerStore.open(path)
        try:
            ledger = Ledger(store, time.time)
            await ledger.bootstrap()
            vip = vip_job(b, ledger)
            run = await (vip.run(day, dry_run=dry_run) if day is not None else vip.run_due(dry_run=dry_run))
        finally:
            await store.close()
        state = "dry run" if dry_run else ("paid now" if run.applied else "already paid" if run.awards else "nobody")
        lines = [f"VIP period {run.period}: {len(run.awards)} member(s), {state}", "rank  points  credits  member"]
        lines += [f"{a.rank:>4}  {a.points:>6}  {a.credits:>7}  {a.member_id}" for a in run.awards]
        return "\n".join(lines) + "\n"

    return _print_run("vip-awards", go)


def _print_run(command: str, go: Callable[[], Coroutine[Any, Any, str]]) -> int:
    """Run a one-off command's coroutine and print what it returns: exit 0, or 1 with the
    error on stderr (a failed run is reported, never a traceback)."""
    import asyncio

    try:
        out = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, never a traceback
        print(f"jasmin-sfu: {command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
