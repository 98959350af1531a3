"""compose.yaml's limits and packaging/nginx.conf's, checked: every service declares memory, CPU
and process limits, and real nginx running the proxy's configuration in front of a real server
refuses a flood of sign-in requests beyond the burst (429, with one plain sentence) while /health
and /mcp pass, and lets a burst of callbacks through, as the provider sends them when videos
finish together."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from luma_mcp.simulator.app import SimulatorServer

from ..helpers.http import KEY, TOKEN_A, HttpServer, free_port, http_env
from ..helpers.nginx import nginx
from ..helpers.oauth import oauth_env

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "Too many requests from your address: wait a minute, then try again.\n"
SIGNIN_BURST = 20  # nginx.conf: zone=signin burst=20, 30 a minute after it
CALLBACK_BURST = 150  # well within nginx.conf's callbacks burst (500)


def block(text: str, *path: str) -> str:
    """The lines nested under `path` (keys, outermost first, each a direct child) in a YAML file."""
    for key in path:
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        indent = min(len(line) - len(line.lstrip()) for line in lines)
        starts = [i for i, line in enumerate(lines) if line.startswith(" " * indent + key + ":")]
        assert starts, f"compose.yaml has no {' > '.join(path)}"
        body = []
        for line in lines[starts[0] + 1 :]:
            if len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
        text = "\n".join(body)
    return text


def test_every_compose_service_has_memory_cpu_and_process_limits() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    for service in ("luma", "proxy", "db"):
        declared = block(compose, "services", service, "deploy", "resources", "limits")
        limits = dict(re.findall(r"^ *(\w+): *\"?([^\"\s#]+)", declared, flags=re.MULTILINE))
        assert set(limits) >= {"memory", "cpus", "pids"}, (service, limits)
        assert re.fullmatch(r"\d+[MG]", limits["memory"]) and float(limits["cpus"]) > 0 and int(limits["pids"]) > 0
    assert "plain HTTP" in compose and "TLS" in compose  # the published port says what it is


def test_nginx_refuses_a_sign_in_flood_and_lets_health_mcp_and_callbacks_through(
    sim_server: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    env = http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY,
                   **oauth_env(f"http://127.0.0.1:{port}"))  # fmt: skip
    server = HttpServer(env, port=port).wait_ready()
    try:
        with nginx(port, tmp_path) as proxy, httpx.Client(base_url=proxy, timeout=30) as http:
            started = time.monotonic()
            body = {"redirect_uris": ["http://127.0.0.1:40123/callback"], "token_endpoint_auth_method": "none"}
            flood = [http.post("/register", json=body) for _ in range(60)]
            by_nginx = [a for a in flood if a.status_code == 429 and a.text == REFUSED]
            passed = [a for a in flood if a.text != REFUSED]
            health = [http.get("/health").status_code for _ in range(30)]
            mcp = http.post("/mcp", json={}, headers={"Authorization": "Bearer wrong"})
            callbacks = [http.post(f"/callbacks/luma/forged-{i}", json={}) for i in range(CALLBACK_BURST)]
            flooded_in = time.monotonic() - started
    finally:
        server.stop()
    refused_callbacks = sum(a.text == REFUSED for a in callbacks)
    print(f"/register x60: {len(passed)} reached the server, {len(by_nginx)} refused by nginx; "
          f"{CALLBACK_BURST} callbacks: {refused_callbacks} refused; {flooded_in:.1f} s")  # fmt: skip
    # The burst and at most one more (30 a minute refill one every 2 s) reach the server, which
    # limits registrations itself (10 a minute per address: its own 429, not nginx's sentence).
    assert SIGNIN_BURST + 1 <= len(passed) <= SIGNIN_BURST + 2 + flooded_in / 2, len(passed)
    assert len(by_nginx) == 60 - len(passed)
    assert {a.status_code for a in passed} <= {201, 429} and any(a.status_code == 201 for a in passed)
    assert health == [200] * 30
    assert mcp.status_code == 401  # the server's answer: nginx passed it
    assert not [a for a in callbacks if a.text == REFUSED]  # the provider's burst gets through
    assert {a.status_code for a in callbacks} <= {400, 404, 429}  # the server's own answers to forgeries
