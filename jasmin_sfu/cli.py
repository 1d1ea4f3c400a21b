"""Command line: ``jasmin-sfu serve [--config FILE]``."""

from __future__ import annotations

import argparse
import sys

from jasmin_sfu.config import ConfigError, load_config
from jasmin_sfu.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jasmin-sfu", description="jasmin-sfu media node")
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="run the daemon")
    serve_p.add_argument("--config", help="TOML config file (default: $JASMIN_CONFIG)")
    serve_p.add_argument("--port", type=int, help="override server.port")
    sub.add_parser("check-config", help="load and validate the config, print it").add_argument("--config")
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
    if getattr(args, "port", None) is not None:
        import dataclasses

        cfg = cfg.replace(server=dataclasses.replace(cfg.server, port=args.port))
    setup_logging(cfg.log.level, cfg.log.format)
    import uvloop

    from jasmin_sfu.app import serve

    return uvloop.run(serve(cfg))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
