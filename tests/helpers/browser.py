"""A real browser for the player tests: Debian's headless Chromium, driven by Playwright, and a
small MCP Apps host page built from the official npm packages.

Chromium is installed with apt-get when missing (CI runs as root), and the host page's packages
from the npm registry into .cache/player-host on first use; the tests skip, saying why, only
where that is impossible. Playwright drives the system Chromium (it downloads no browser) and
gives each launch a fresh profile.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from luma_mcp.server.player import ext_apps_version

from .debian import apt_install

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
HOST_CACHE = ROOT / ".cache" / "player-host"
HOST_SOURCE = ROOT / "tests" / "e2e" / "player_host" / "host.js"
# The host side: the same ext-apps release the view ships, and what its app-bridge needs.
HOST_PACKAGES = {
    "@modelcontextprotocol/ext-apps": ext_apps_version(),
    "@modelcontextprotocol/client": "2.4.0",
    "zod": "4.6.7",
    "esbuild": "0.28.2",
}
# Flags that work in containers and keep the browser off the network (no updates, sync or QUIC).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> Path:
    """The system Chromium, installed with apt-get if need be; skips the test where impossible."""
    if CHROMIUM.exists():
        return CHROMIUM
    if (why_not := apt_install("chromium")) is not None:
        pytest.skip(why_not)
    if not CHROMIUM.exists():
        pytest.skip("apt-get installed chromium, but /usr/bin/chromium is not there")
    return CHROMIUM


def host_script() -> str:
    """The test host page's script: host.js bundled with its npm packages (installed once)."""
    if shutil.which("npm") is None:
        pytest.skip("npm not found: install Node.js to run the player's browser tests")
    installed = HOST_CACHE / "installed.txt"
    wanted = " ".join(f"{name}@{version}" for name, version in sorted(HOST_PACKAGES.items()))
    if not installed.exists() or installed.read_text() != wanted:
        HOST_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(HOST_CACHE), "--save-exact", "--no-audit", "--no-fund", *wanted.split()],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        installed.write_text(wanted)
    bundle = HOST_CACHE / "host.bundle.js"
    if not bundle.exists() or bundle.stat().st_mtime < max(HOST_SOURCE.stat().st_mtime, installed.stat().st_mtime):
        # esbuild resolves imports from the folder of its entry point: bundle a copy placed in the cache.
        entry = HOST_CACHE / "host.js"
        shutil.copyfile(HOST_SOURCE, entry)
        subprocess.run(
            [str(HOST_CACHE / "node_modules" / ".bin" / "esbuild"), str(entry), "--bundle", "--format=esm",
             "--platform=browser", "--log-level=error", f"--outfile={bundle}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return bundle.read_text(encoding="utf-8")


def npm_ext_apps_bundle() -> bytes:
    """The app-with-deps build of the pinned ext-apps release, as npm installed it for the host."""
    return (
        HOST_CACHE / "node_modules" / "@modelcontextprotocol" / "ext-apps" / "dist" / "src" / "app-with-deps.js"
    ).read_bytes()
