"""One typed configuration tree.

Order of precedence: built-in defaults, then a TOML file (unknown sections or
keys are errors, so a typo never silently falls back to a default), then
``JASMIN_<SECTION>_<KEY>`` environment variables, then validation. The result
is a frozen dataclass passed into constructors; nothing deeper in the daemon
reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jasmin_sfu.media.settings import SRTP_PROFILE_NAMES, MediaSettings
from jasmin_sfu.services.accounts import AccountsSettings
from jasmin_sfu.services.chat import ChatSettings
from jasmin_sfu.services.cluster import ClusterSettings
from jasmin_sfu.services.privacy import PrivacySettings


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class ServerConfig:
    """HTTP and websocket listener."""

    host: str = "127.0.0.1"
    port: int = 8080
    # A signaling frame above this is answered with `frame_too_large` and the
    # connection stays up. SDP offers are 3-10 KiB; 128 KiB leaves room.
    max_frame_bytes: int = 131072
    # Above this aiohttp closes the socket (1009): we refuse to buffer more.
    hard_max_frame_bytes: int = 1048576
    heartbeat_s: float = 20.0
    # Seconds allowed for a SIGTERM drain before peer connections are cut.
    drain_timeout_s: float = 5.0
    # Requests per second per websocket before `rate_limited` answers.
    max_requests_per_s: float = 50.0
    demo_page: bool = True
    # Media worker processes: 1 runs everything in this process; N > 1 makes
    # this process a supervisor that spawns N workers (each pinned to a core)
    # and routes each show's websockets to the one worker holding it; 0 = one
    # per usable core. See docs/workers.md.
    workers: int = 1
    # With workers > 1: how often the supervisor asks its workers which WHIP/WHEP
    # sessions are still live, and releases the show placements of those that
    # ended without a DELETE (a closed tab, an encoder that died). docs/workers.md.
    http_session_sweep_s: float = 30.0
    # With workers > 1: how often the supervisor reads each worker's load (viewers, CPU against
    # its admission limits) for placing shows and guests. docs/workers.md.
    worker_load_poll_s: float = 1.0
    # Set by the supervisor for its workers only: the shared secret that lets
    # it name the signaling session id and the client's address. Empty: the
    # internal headers are ignored.
    internal_secret: str = ""
    # Set by the supervisor for its workers only: the loopback URL of its internal
    # endpoint, through which a revocation made in one worker (an erasure, a logout)
    # reaches the others (docs/workers.md, "Revocations"). Empty: a node alone.
    supervisor_url: str = ""
    # Web pages (origins, "https://site.example") that may open /ws and call
    # /api/v1 from a browser, besides the node's own origin (the Host it is
    # served on). Requests without an Origin header (non-browser clients) are
    # always allowed; "null" (sandboxed frames, file: pages) only when listed;
    # "*" allows every origin. jasmin_sfu/api/origin.py.
    allowed_origins: tuple[str, ...] = ()
    # A warning is logged when the event loop was blocked this long (jasmin_sfu/loop_lag.py;
    # every lag is in /metrics as jasmin_event_loop_lag_seconds); 0 turns the warning off.
    loop_lag_warn_ms: int = 100


# [media] is declared beside the media core, which must not import this module
# (setup.cfg, media-knows-no-business): jasmin_sfu/media/settings.py.
MediaConfig = MediaSettings


@dataclass(frozen=True)
class ShowsConfig:
    """Show rules (docs/product.md); handed as is to jasmin_sfu/shows/registry.py and each show."""

    # A member's sneak peek into a performer's member chat.
    sneak_peek_s: float = 20.0
    # Whether a performer accepts private requests without clicking (the
    # performer can change it per show with `show.settings`).
    auto_accept: bool = False


@dataclass(frozen=True)
class BillingConfig:
    """Per-second billing of privates (docs/money.md)."""

    enabled: bool = True
    # Embedded defaults live here: ledger.sqlite3, billing-outbox.sqlite3 and
    # the append-only billing log billing-events.jsonl.
    data_dir: str = "var"
    # The outbox and the local sink files (billing-outbox.sqlite3,
    # billing-events.jsonl/.sqlite3) go here instead of data_dir when set; the
    # supervisor gives each worker its own, while the ledger stays shared.
    outbox_dir: str = ""
    # PostgreSQL for the ledger instead of SQLite (empty: SQLite in data_dir).
    ledger_dsn: str = ""
    # Prefix of this node's credit-control sessions: a restarted node closes its own.
    node_id: str = "node1"
    # Hundredths of a credit per minute when the performer set no price.
    default_price_per_minute: int = 200
    grant_seconds: int = 30
    warn_at_s: tuple[int, ...] = (60, 10)
    # Where usage events go, several at once: file, sqlite, postgres, webhook, redis, nats.
    sinks: tuple[str, ...] = ("file",)
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    webhook_url: str = ""
    webhook_secret: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    # A graceful stop waits this long for the relay to deliver the outbox to every sink;
    # what is left stays in the outbox for the next start.
    drain_timeout_s: float = 5.0
    # The performer's share of a private's revenue, in basis points (contract data;
    # docs/product.md gives no figure). The house gets the rest.
    performer_share_bp: int = 5000
    # VIP free credits on the 1st and 16th of each month (docs/product.md): "max_rank:credits"
    # tiers in rising rank order; the last tier's rank is how many members are paid (500).
    # Empty: the job pays nobody.
    vip_award_tiers: tuple[str, ...] = ("500:5",)
    # The daemon checks this often whether a VIP award is due (0: never; the CLI still can).
    vip_check_interval_s: float = 600.0
    # An award runs this long after its period starts, so every purchase of the day before
    # has committed on every node before the ranking is read.
    vip_settle_s: int = 300


def vip_tiers(tiers: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Parse ``billing.vip_award_tiers`` ("max_rank:credits", ranks rising); raises ValueError."""
    out: list[tuple[int, int]] = []
    for t in tiers:
        rank_s, sep, credits_s = t.partition(":")
        if not sep or not rank_s.strip().isdigit() or not credits_s.strip().isdigit():
            raise ValueError(f"tier {t!r} is not max_rank:credits")
        rank, credits = int(rank_s), int(credits_s)
        if rank <= (out[-1][0] if out else 0) or credits <= 0:
            raise ValueError(f"tier {t!r}: ranks must rise and credits be positive")
        out.append((rank, credits))
    return tuple(out)


# [accounts] is declared beside the service that reads it (services may not import this
# module: it imports the media core's settings): jasmin_sfu/services/accounts.py.
AccountsConfig = AccountsSettings


# [privacy] is declared beside the service that reads it: jasmin_sfu/services/privacy.py.
PrivacyConfig = PrivacySettings


@dataclass(frozen=True)
class PaymentsConfig:
    """Credit purchases: which processor charges cards."""

    # none: purchases are refused (503). test: a processor that approves
    # everything and moves no money - development and tests only.
    provider: str = "none"


# [chat] is declared beside the service that reads it: jasmin_sfu/services/chat.py.
ChatConfig = ChatSettings


@dataclass(frozen=True)
class TurnConfig:
    """TURN through coturn for viewers behind UDP-blocking networks (docs/deploy.md)."""

    # turn:/turns: URLs handed to clients, e.g. "turn:turn.example.com:3478?transport=udp",
    # "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp".
    # Empty: no TURN (the join answer's ice_servers is []).
    urls: tuple[str, ...] = ()
    # coturn's static-auth-secret (use-auth-secret): credentials are HMAC-SHA1 of it.
    # Left out of repr, so `jasmin-sfu check-config` does not print it.
    secret: str = field(default="", repr=False)
    # Credential lifetime. coturn checks it on every Allocate and Refresh, so it
    # must outlast a viewing session; the draft suggests a day.
    ttl_s: int = 86400


@dataclass(frozen=True)
class AdmissionConfig:
    """Admission control per worker (jasmin_sfu/api/admission.py, docs/signaling.md `overloaded`).

    A join past any limit is refused at once with `overloaded` instead of being
    accepted and timing out. 0 turns a limit off. Defaults from bench/README.md
    (one publisher, VP8 1.5 Mbit/s + Opus, one core): 450 viewers held and 500
    failed on p99 latency at 82-95 % CPU, so refuse from 400 viewers and from
    85 % CPU; a flash join of 50-100 viewers took TTFF p50 100-240 ms, so at
    most 50 joins start at once.
    """

    max_viewers_per_worker: int = 400
    max_joins_in_flight: int = 50
    max_cpu_share: float = 0.85
    # The CPU share is measured over at least this much wall time.
    cpu_window_s: float = 1.0
    # A join stops counting as in flight after this long even without media.
    join_timeout_s: float = 10.0
    # The hint in the refusal: try again after this long (or another node).
    retry_after_ms: int = 2000


# [cluster] is declared beside the registry that uses it: jasmin_sfu/services/cluster.py.
ClusterConfig = ClusterSettings


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    shows: ShowsConfig = field(default_factory=ShowsConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def replace(self, **sections: Any) -> "Config":
        """A copy with whole sections replaced (tests use this)."""
        return dataclasses.replace(self, **sections)


ENV_PREFIX = "JASMIN_"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _apply(base: Config, overrides: Mapping[str, Mapping[str, Any]], origin: str) -> Config:
    sections = _section_types(Config)
    new_sections: dict[str, Any] = {}
    for name, values in overrides.items():
        if name not in sections:
            raise ConfigError(f"{origin}: unknown section [{name}]")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{name}] must be a table")
        cls = sections[name]
        hints = _section_types(cls)
        changes = {}
        for key, raw in values.items():
            if key not in hints:
                raise ConfigError(f"{origin}: unknown key {name}.{key}")
            changes[key] = _coerce(raw, hints[key], f"{origin}: {name}.{key}")
        new_sections[name] = dataclasses.replace(getattr(base, name), **changes)
    return dataclasses.replace(base, **new_sections)


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    sections = _section_types(Config)
    out: dict[str, dict[str, str]] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == "JASMIN_CONFIG":
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or key not in _section_types(sections[section]):
            raise ConfigError(f"environment: unknown variable {var}")
        out.setdefault(section, {})[key] = value
    return out


_SUPERVISOR_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}\Z")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z")


def validate(cfg: Config) -> Config:
    """Check cross-field rules; returns the config unchanged or raises."""
    s, m = cfg.server, cfg.media
    if not 0 <= s.port <= 65535:
        raise ConfigError("server.port must be 0..65535")
    if not 1024 <= s.max_frame_bytes <= s.hard_max_frame_bytes:
        raise ConfigError("server.max_frame_bytes must be >= 1024 and <= hard_max_frame_bytes")
    if s.max_requests_per_s <= 0:
        raise ConfigError("server.max_requests_per_s must be positive")
    if s.loop_lag_warn_ms < 0:
        raise ConfigError("server.loop_lag_warn_ms must be >= 0 (0: no warning)")
    if not 0 <= s.workers <= 256:
        raise ConfigError("server.workers must be 0..256 (0: one per core)")
    if not 0.1 <= s.http_session_sweep_s <= 3600:
        raise ConfigError("server.http_session_sweep_s must be 0.1..3600 seconds")
    if not 0.1 <= s.worker_load_poll_s <= 3600:
        raise ConfigError("server.worker_load_poll_s must be 0.1..3600 seconds")
    if s.internal_secret and len(s.internal_secret) < 32:
        raise ConfigError("server.internal_secret must be at least 32 characters when set")
    if s.supervisor_url and not (s.internal_secret and _SUPERVISOR_URL.match(s.supervisor_url)):
        raise ConfigError(
            "server.supervisor_url must be http://127.0.0.1:PORT, with server.internal_secret set "
            "(the supervisor sets both for its workers)"
        )
    for origin in s.allowed_origins:
        if origin not in ("*", "null") and not _ORIGIN.match(origin):
            raise ConfigError(
                f"server.allowed_origins: {origin!r} is not an origin (scheme://host[:port], no path), 'null' or '*'"
            )
    if not m.listen_ips:
        raise ConfigError("media.listen_ips must name at least one address")
    for ip in m.listen_ips + ((m.announced_ip,) if m.announced_ip else ()):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(f"media: {ip!r} is not an IP address") from None
    if (m.rtc_min_port, m.rtc_max_port) != (0, 0):
        if not 1024 <= m.rtc_min_port <= m.rtc_max_port <= 65535:
            raise ConfigError("media.rtc_min_port..rtc_max_port must be a range within 1024..65535")
    if m.rtc_udp_port:
        if not 1024 <= m.rtc_udp_port <= 65535:
            raise ConfigError(
                "media.rtc_udp_port must be 0 (the shared socket on a free port of rtc_min_port..rtc_max_port)"
                " or a port in 1024..65535"
            )
        if m.rtc_socket_per_peer:
            raise ConfigError(
                "media.rtc_udp_port (one fixed port for every peer connection) and media.rtc_socket_per_peer = true"
                " (a socket of its own per peer connection) contradict each other: set one of them"
            )
        if m.rtc_min_port <= m.rtc_udp_port <= m.rtc_max_port:
            raise ConfigError("media.rtc_udp_port must lie outside media.rtc_min_port..rtc_max_port")
    known_video = {"VP8", "H264"}
    for c in m.video_codecs:
        if c not in known_video:
            raise ConfigError(f"media.video_codecs: {c!r} is not one of {sorted(known_video)}")
    if not m.video_codecs:
        raise ConfigError("media.video_codecs must not be empty")
    if tuple(c.lower() for c in m.audio_codecs) != ("opus",):
        raise ConfigError("media.audio_codecs: only 'opus' is supported")
    if not 64 <= m.packet_cache_size <= 65536 or m.packet_cache_size & (m.packet_cache_size - 1):
        raise ConfigError("media.packet_cache_size must be a power of two in 64..65536")
    if m.keyframe_request_interval_ms < 0 or m.rtcp_interval_ms < 100:
        raise ConfigError("media: keyframe_request_interval_ms >= 0 and rtcp_interval_ms >= 100")
    if not 0 < m.remb_min_bps <= m.remb_max_bps:
        raise ConfigError("media.remb_min_bps must be positive and <= remb_max_bps")
    if not 1 <= m.max_producers_per_publisher <= 64:
        raise ConfigError("media.max_producers_per_publisher must be in 1..64")
    if not 1 <= m.negotiations_at_once <= 64:
        raise ConfigError("media.negotiations_at_once must be in 1..64")
    if not m.srtp_profiles:
        raise ConfigError("media.srtp_profiles must name at least one SRTP profile")
    for name in m.srtp_profiles:
        if name not in SRTP_PROFILE_NAMES:
            raise ConfigError(f"media.srtp_profiles: {name!r} is not one of {list(SRTP_PROFILE_NAMES)}")
    if len(set(m.srtp_profiles)) != len(m.srtp_profiles):
        raise ConfigError("media.srtp_profiles names a profile twice")
    if not 0 <= m.nack_max_retries <= 10:
        raise ConfigError("media.nack_max_retries must be in 0..10")
    if not 1 <= m.nack_default_rtt_ms <= m.nack_max_delay_ms <= 10_000:
        raise ConfigError("media: 1 <= nack_default_rtt_ms <= nack_max_delay_ms <= 10000")
    if not 0.0 <= m.nack_budget_fraction <= 1.0:
        raise ConfigError("media.nack_budget_fraction must be in 0..1")
    if not 0 <= m.nack_budget_min_burst_bytes <= 16_000_000:
        raise ConfigError("media.nack_budget_min_burst_bytes must be in 0..16000000")
    if not 0 < m.bwe_min_bps <= m.bwe_start_bps <= m.bwe_max_bps <= 1_000_000_000:
        raise ConfigError("media: 0 < bwe_min_bps <= bwe_start_bps <= bwe_max_bps <= 1000000000")
    if not 1.0 <= m.bwe_max_jump <= 1000.0:
        raise ConfigError("media.bwe_max_jump must be in 1..1000")
    if not 0 <= m.bwe_audio_reserve_bps <= 1_000_000:
        raise ConfigError("media.bwe_audio_reserve_bps must be in 0..1000000")
    if not 1.0 <= m.layer_headroom <= 4.0:
        raise ConfigError("media.layer_headroom must be in 1..4")
    if not 0.5 <= m.layer_keep_ratio <= 1.0:
        raise ConfigError("media.layer_keep_ratio must be in 0.5..1")
    if not 0 <= m.layer_up_hold_ms <= m.layer_backoff_max_ms <= 600_000:
        raise ConfigError("media: 0 <= layer_up_hold_ms <= layer_backoff_max_ms <= 600000")
    if not 0 <= m.layer_min_dwell_ms <= 60_000 or not 0 <= m.layer_failed_up_ms <= 600_000:
        raise ConfigError("media: layer_min_dwell_ms in 0..60000 and layer_failed_up_ms in 0..600000")
    if not 100 <= m.probe_interval_ms <= m.probe_max_interval_ms <= 3_600_000:
        raise ConfigError("media: 100 <= probe_interval_ms <= probe_max_interval_ms <= 3600000")
    if not m.layer_up_hold_ms <= m.probe_duration_ms <= 600_000 or m.probe_duration_ms <= 0:
        raise ConfigError("media.probe_duration_ms must be positive, >= layer_up_hold_ms and <= 600000")
    if not 0 < cfg.shows.sneak_peek_s <= 600:
        raise ConfigError("shows.sneak_peek_s must be in (0, 600]")
    b = cfg.billing
    for sink in b.sinks:
        if sink not in ("file", "sqlite", "postgres", "webhook", "redis", "nats"):
            raise ConfigError(f"billing.sinks: unknown sink {sink!r}")
    if "webhook" in b.sinks and not (b.webhook_url and b.webhook_secret):
        raise ConfigError("billing.sinks has webhook: set billing.webhook_url and billing.webhook_secret")
    if b.default_price_per_minute <= 0 or b.grant_seconds <= 0:
        raise ConfigError("billing.default_price_per_minute and billing.grant_seconds must be positive")
    if not b.node_id or "-" in b.node_id or ":" in b.node_id:
        raise ConfigError("billing.node_id must be non-empty without '-' or ':'")
    if b.drain_timeout_s <= 0 or b.vip_check_interval_s < 0 or b.vip_settle_s < 0:
        raise ConfigError("billing.drain_timeout_s must be positive, vip_check_interval_s and vip_settle_s >= 0")
    if not 0 <= b.performer_share_bp <= 10_000:
        raise ConfigError("billing.performer_share_bp must be within 0..10000 (basis points)")
    try:
        vip_tiers(b.vip_award_tiers)
    except ValueError as exc:
        raise ConfigError(f"billing.vip_award_tiers: {exc}") from None
    a = cfg.accounts
    if not a.enabled and not a.trust_client_ids:
        raise ConfigError("accounts.enabled = false needs accounts.trust_client_ids = true (no join could succeed)")
    if not 0 < a.guest_session_ttl_s <= 15 * 86400:
        raise ConfigError("accounts.guest_session_ttl_s must be in 1..1296000 (guest data: 15 days at most)")
    if not 0 < a.adult_confirmation_ttl_s <= 366 * 86400:
        raise ConfigError("accounts.adult_confirmation_ttl_s must be in 1..31622400 (a year at most)")
    if a.session_ttl_s <= 0 or a.purge_interval_s <= 0:
        raise ConfigError("accounts.session_ttl_s and accounts.purge_interval_s must be positive")
    if a.password_time_cost < 1 or a.password_parallelism < 1 or a.password_memory_kib < 8 * a.password_parallelism:
        raise ConfigError(
            "accounts: password_time_cost >= 1, password_parallelism >= 1, "
            "password_memory_kib >= 8 x password_parallelism"
        )
    if a.login_window_s <= 0 or a.login_max_failures_per_username < 1 or a.login_max_failures_per_address < 1:
        raise ConfigError("accounts: login_window_s > 0, login_max_failures_per_username/_per_address >= 1")
    pv = cfg.privacy
    if not (
        0 < pv.usage_retention_days <= 120 and 0 < pv.guest_retention_days <= 15 and 0 < pv.identity_retention_days <= 5
    ):
        raise ConfigError(
            "privacy: usage_retention_days 1..120, guest_retention_days 1..15, "
            "identity_retention_days 1..5 (docs/product.md's maximums)"
        )
    if pv.inactive_account_days < 365 or pv.username_blacklist_days < 0 or pv.retention_interval_s <= 0:
        raise ConfigError(
            "privacy: inactive_account_days >= 365 (a year), username_blacklist_days >= 0, retention_interval_s > 0"
        )
    if not 1 <= len(pv.site) <= 64:
        raise ConfigError("privacy.site must be 1-64 characters")
    if cfg.payments.provider not in ("none", "test"):
        raise ConfigError(f"payments.provider: {cfg.payments.provider!r} is not one of none, test")
    ch = cfg.chat
    if (
        min(ch.member_messages, ch.guest_messages, ch.staff_messages) < 1
        or min(ch.member_window_s, ch.guest_window_s, ch.staff_window_s) <= 0
    ):
        raise ConfigError("chat: *_messages must be >= 1 and *_window_s positive")
    if not 0 <= ch.history_on_join <= 200 or not 0 <= ch.tip_performer_share_bp <= 10_000:
        raise ConfigError("chat.history_on_join must be 0..200 and chat.tip_performer_share_bp 0..10000")
    if not ch.redis_prefix or any(x in ch.redis_prefix for x in " *?[]"):
        raise ConfigError("chat.redis_prefix must be non-empty, without spaces or glob characters")
    if ch.redis_url and not ch.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("chat.redis_url must be a redis://, rediss:// or unix:// URL (or empty)")
    _validate_turn(cfg.turn)
    _validate_admission(cfg.admission)
    _validate_cluster(cfg.cluster, cfg.server)
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level must be debug, info, warning or error")
    if cfg.log.format not in ("json", "text"):
        raise ConfigError("log.format must be json or text")
    return cfg


# turn:host[:port][?transport=udp|tcp] or turns:host[:port][?transport=tcp] (RFC 7065);
# host: a name, an IPv4 address or a bracketed IPv6 address.
_TURN_URL = re.compile(
    r"(?:turn:(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?:udp|tcp))?"
    r"|turns:(?P<shost>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<sport>[0-9]{1,5}))?(?:\?transport=tcp)?)\Z"
)


def _validate_turn(t: TurnConfig) -> None:
    for url in t.urls:
        found = _TURN_URL.match(url)
        port = found and (found.group("port") or found.group("sport"))
        if found is None or (port and not 1 <= int(port) <= 65535):
            raise ConfigError(
                f"turn.urls: {url[:200]!r} is not turn:host[:port][?transport=udp|tcp] "
                "or turns:host[:port][?transport=tcp]"
            )
    if t.urls and len(t.secret) < 16:
        raise ConfigError("turn.secret (coturn's static-auth-secret) must be 16 characters or more with turn.urls")
    if t.secret and not t.urls:
        raise ConfigError("turn.secret is set but turn.urls is empty: name the TURN servers")
    if not 60 <= t.ttl_s <= 7 * 86400:
        raise ConfigError("turn.ttl_s must be 60..604800 seconds (credentials must outlast a viewing session)")


def _validate_admission(a: AdmissionConfig) -> None:
    if a.max_viewers_per_worker < 0 or a.max_joins_in_flight < 0:
        raise ConfigError("admission.max_viewers_per_worker and max_joins_in_flight must be >= 0 (0: off)")
    if not 0.0 <= a.max_cpu_share <= 1.0:
        raise ConfigError("admission.max_cpu_share must be 0..1 (a share of one core; 0: off)")
    if not 0.1 <= a.cpu_window_s <= 60.0:
        raise ConfigError("admission.cpu_window_s must be 0.1..60 seconds")
    if not 1.0 <= a.join_timeout_s <= 300.0:
        raise ConfigError("admission.join_timeout_s must be 1..300 seconds")
    if not 0 <= a.retry_after_ms <= 600_000:
        raise ConfigError("admission.retry_after_ms must be 0..600000")


_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_WS_URL = re.compile(r"wss?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?/[^\s]*\Z")


def _validate_cluster(c: ClusterConfig, s: ServerConfig) -> None:
    if not c.redis_url:
        if c.node_id or c.advertised_url or c.secret:
            raise ConfigError("cluster: node_id, advertised_url or secret set without cluster.redis_url")
        return
    if not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("cluster.redis_url must be a redis://, rediss:// or unix:// URL (or empty: no cluster)")
    if not _NODE_ID.match(c.node_id):
        raise ConfigError("cluster.node_id must be 1-64 letters, digits, '.', '_' or '-' with cluster.redis_url")
    if not c.key_prefix or any(x in c.key_prefix for x in " *?[]"):
        raise ConfigError("cluster.key_prefix must be non-empty, without spaces or glob characters")
    if len(c.secret) < 32:
        raise ConfigError("cluster.secret must be at least 32 characters with cluster.redis_url")
    if c.advertised_url and not _WS_URL.match(c.advertised_url):
        raise ConfigError(
            f"cluster.advertised_url: {c.advertised_url[:200]!r} is not a ws:// or wss:// URL with a path"
        )
    if not c.advertised_url and s.host in ("0.0.0.0", "::", ""):
        raise ConfigError("cluster.advertised_url is needed when server.host is a wildcard address")
    if not 0.05 <= c.heartbeat_interval_s <= 60.0:
        raise ConfigError("cluster.heartbeat_interval_s must be 0.05..60 seconds")
    if not 2 * c.heartbeat_interval_s <= c.ttl_s <= 600.0:
        raise ConfigError("cluster.ttl_s must be at least twice heartbeat_interval_s and at most 600 seconds")
    if c.relay_host:
        try:
            ipaddress.ip_address(c.relay_host)
        except ValueError:
            raise ConfigError(f"cluster.relay_host: {c.relay_host[:100]!r} is not an IP address") from None
    if s.workers != 1:
        raise ConfigError("cluster: server.workers must be 1 on a cluster node (relays between workers come later)")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at ``path`` (or ``$JASMIN_CONFIG``), then env."""
    env = os.environ if env is None else env
    cfg = Config()
    path = path or env.get("JASMIN_CONFIG") or None
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        cfg = _apply(cfg, data, str(p))
    cfg = _apply(cfg, _from_env(env), "environment")
    return validate(cfg)
