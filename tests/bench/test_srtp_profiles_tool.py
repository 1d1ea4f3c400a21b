"""bench.srtp_profiles times the profile it names, through the C fast path's own call (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pylibsrtp import Policy, Session

from bench import hotpath, srtp_profiles
from tests.realparts import require_fastpath

# Master key + salt of each profile (RFC 7714 for the AEAD ones, RFC 3711 for AES-CM).
KEY_SALT = {"aead_aes_256_gcm": 44, "aead_aes_128_gcm": 28, "aes128_cm_sha1_80": 30}
TAG = {"aead_aes_256_gcm": 16, "aead_aes_128_gcm": 16, "aes128_cm_sha1_80": 10}


@pytest.mark.parametrize("profile", list(srtp_profiles.PROFILES))
def test_each_session_is_of_the_profile_it_is_named_after(profile: str) -> None:
    """Protects the benchmark's meaning: a row named after a profile timed a session of that
    profile. A receiver set up for exactly that profile (and key) unprotects what the bench's
    session protected, and the trailer is that profile's tag; a session silently left at
    libsrtp's default (AES-CM with HMAC-SHA1-80) fails both for the GCM rows."""
    tx = srtp_profiles.session(profile)
    plain = srtp_profiles.packet(1150)
    protected = tx.protect(plain)
    assert len(protected) - len(plain) == TAG[profile]
    libsrtp_profile, key_len = srtp_profiles.PROFILES[profile]
    assert key_len == KEY_SALT[profile]
    rx = Session(Policy(key=bytes(range(key_len)), ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=libsrtp_profile))
    assert rx.unprotect(protected) == plain


def test_c_loop_and_fanout_give_a_row_per_profile(tmp_path: Path) -> None:
    """Protects the tool end to end: the C loop calls srtp_protect through the fast path's
    function pointer (a failed protect aborts the run), the fan-out runs under each profile,
    and the JSON record holds every (path, packet, profile) row with its ratio to 256-GCM."""
    require_fastpath()
    out = tmp_path / "srtp.json"
    argv = ["--calls", "2000", "--repeat", "1", "--paths", "c,fanout", "--fanout", "2", "--fanout-packets", "100"]
    assert srtp_profiles.main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["path"], r["packet"], r["profile"]) for r in rows} == {
        (path, packet, profile)
        for path, packets in (("c", ("video 1150 B", "audio 100 B")), ("fanout x2", ("video 1150 B",)))
        for packet in packets
        for profile in srtp_profiles.PROFILES
    }
    for r in rows:
        assert r["ns"] > 0, r
        if r["profile"] == srtp_profiles.BASELINE:
            assert r["ratio_to_256_gcm"] == 1.0


@pytest.mark.parametrize("profile", list(srtp_profiles.PROFILES))
def test_hotpath_c_fanout_runs_under_each_profile(profile: str) -> None:
    """Protects hotpath --srtp-profile: every copy goes through the C lanes, under the profile
    the row names."""
    require_fastpath()
    row = hotpath.run(2, 300, "c", srtp_profile=profile)
    assert row["srtp_profile"] == profile
    assert row["packets_in"] == 100 and row["copies_per_s"] > 0
