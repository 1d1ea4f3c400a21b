"""What the TURN tests need from the machine (bench/coturn.py runs coturn for them)."""

from __future__ import annotations

import os
import shutil

import pytest

from bench import netns


def require(*tools: str) -> None:
    """Skip (or, with CI=true, fail) naming what is missing: root and each command."""
    missing = netns.available()
    for tool in tools:
        if missing is None and shutil.which(tool) is None:
            package = {"turnserver": "coturn", "nft": "nftables"}.get(tool, tool)
            missing = f"needs {tool} (apt-get install {package}, or make coturn)"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"TURN tests: {missing} (CI=true: a missing part fails the run)", pytrace=False)
    pytest.skip(f"TURN tests: {missing}")
