"""Real nginx on loopback, from Debian's package, running a copy of packaging/nginx.conf.

Installed with apt-get when missing (as tests/helpers/postgres.py does for PostgreSQL); the test
skips, saying why, where it cannot be had. The copy differs from the file only where a test
machine must: the replicas' address becomes the given upstream, nginx listens on a loopback port,
and its logs, pid and temporary files go to a scratch folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .debian import apt_install
from .http import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "packaging" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if (why_not := apt_install("nginx-light")) is not None:
        pytest.skip(why_not)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def loopback_conf(upstream_port: int, port: int, scratch: Path) -> str:
    text = CONF.read_text()
    for old, new in (
        ("server luma:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("http {", f"http {{\n    access_log {scratch}/access.log;\n    client_body_temp_path {scratch}/body;\n"
                   f"    proxy_temp_path {scratch}/proxy;"),
    ):  # fmt: skip
        assert text.count(old) == 1, f"packaging/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


@contextmanager
def nginx(upstream_port: int, scratch: Path) -> Iterator[str]:
    """nginx in front of `upstream_port`, as packaging/nginx.conf says; its base URL."""
    binary = nginx_binary()
    port = free_port()
    conf = scratch / "nginx.conf"
    conf.write_text(loopback_conf(upstream_port, port, scratch))
    user = ["-g", f"pid {scratch}/nginx.pid; daemon off;" + (" user root;" if os.geteuid() == 0 else "")]
    argv = [binary, "-p", str(scratch), "-c", str(conf), "-e", str(scratch / "error.log"), *user]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (scratch / "error.log").read_text()
            try:
                httpx.get(f"{url}/nothing-here", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not answer within 15 s"
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
