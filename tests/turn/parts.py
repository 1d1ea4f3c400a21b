"""What the TURN tests need from the machine (bench/coturn.py runs coturn for them)."""

from __future__ import annotations

import os
import shutil

import pytest

from bench import netns


def require(*tools: str) -> None:
    """Skip (or, with CI=true, fail) naming what is missing: root and each command."""
    missing = netns.available()
    with open("/proc/self/uid_map") as f:
        if missing is None and f.read().split()[:3] != ["0", "0", "4294967295"]:
            missing = "needs real root: ip netns add cannot work in a user namespace (unshare --map-root-user)"
    for tool in tools:
        if missing is None and shutil.which(tool) is None:
            package = {"turnserver": "coturn", "nft": "nftables"}.get(tool, tool)
            missing = f"needs {tool} (apt-get install {package}, or make coturn)"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"TURN tests: {missing} (CI=true: a missing part fails the run)", pytrace=False)
    pytest.skip(f"TURN tests: {missing}")
