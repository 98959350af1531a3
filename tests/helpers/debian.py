"""Debian packages the tests run for real (PostgreSQL, Chromium, nginx), installed when missing."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(package: str) -> str | None:
    """Install Debian's `package` with apt-get; None on success, else why not (for a skip)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{package} is not installed and this user cannot apt-get install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            return f"apt-get could not install {package}: {done.stderr.strip()[-300:]}"
    return None
