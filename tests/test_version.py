"""One version number: setup.cfg's, read from the package metadata everywhere it is shown."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys

import aiohttp

from jasmin_sfu import __version__
from tests.conftest import REPO, Running, scrape_metrics


def setup_cfg_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    return cfg["metadata"]["version"]


def test_version_comes_from_setup_cfg_and_is_written_nowhere_else() -> None:
    """Protects the one place: jasmin_sfu.__version__ is setup.cfg's version (through the
    installed metadata), and no module of ours assigns a version string literal again."""
    assert __version__ == setup_cfg_version()
    literal = re.compile(r"""^\s*__version__\s*=\s*["']\d+\.\d+""", re.M)  # a number, not the fallback
    for top in ("jasmin_sfu", "codecs", "signaling", "metering"):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    with open(path) as f:
                        assert not literal.search(f.read()), f"{path} writes its own __version__"


def test_cli_version_prints_it() -> None:
    """Protects `jasmin-sfu --version`: it prints the name and setup.cfg's version, exit 0."""
    out = subprocess.run(
        [sys.executable, "-m", "jasmin_sfu", "--version"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"jasmin-sfu {setup_cfg_version()}"


async def test_metrics_carry_build_info(daemon: Running) -> None:
    """Protects the jasmin_build_info gauge: /metrics says which version is running (value 1)."""
    m = await scrape_metrics(daemon.http)
    assert m[f'jasmin_build_info{{version="{setup_cfg_version()}"}}'] == 1.0
    assert [k for k in m if k.startswith("jasmin_build_info")] == [f'jasmin_build_info{{version="{__version__}"}}']


async def test_openapi_document_info_version_is_it(daemon: Running) -> None:
    """Protects the REST contract's version: /openapi.json's info.version is setup.cfg's."""
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.http + "/openapi.json") as r:
            assert r.status == 200
            doc = await r.json()
    assert doc["info"]["version"] == setup_cfg_version()
