"""The baseline for `run.py`: the least an MCP server can do to read one Luma task.

One tool, one `httpx` request per call (the very request luma-mcp's get_task makes), the
raw answer returned as text: no validation, retries, models or result shaping. Whatever
luma-mcp costs beyond this is its own overhead; MCP framing, process start-up and the
HTTP round trip are the same for both and so cancel out in the ratios.

Run as a stdio MCP server: `python benchmarks/bare_server.py`, with ACEDATACLOUD_API_BASE_URL
and ACEDATACLOUD_API_TOKEN in the environment.
"""

from __future__ import annotations

import os

import httpx
from mcp.server import MCPServer

BASE = os.environ.get("ACEDATACLOUD_API_BASE_URL", "https://api.acedata.cloud").rstrip("/")
TOKEN = os.environ.get("ACEDATACLOUD_API_TOKEN", "")

# WARNING, as luma-mcp runs here (LUMA_LOG_LEVEL): at the default INFO, httpx would log every
# request to stderr, work that would be charged to the baseline.
mcp = MCPServer("bare", log_level="WARNING")
_http: httpx.AsyncClient | None = None


def _client() -> httpx.AsyncClient:
    # Created on first use, inside the server's event loop, and reused: one pooled
    # connection, as luma-mcp keeps one.
    global _http
    if _http is None:
        _http = httpx.AsyncClient(timeout=30.0)  # luma-mcp's default request timeout
    return _http


@mcp.tool()
async def get_task(task_id: str) -> str:
    """Read one Luma task, returned as the API's raw JSON."""
    response = await _client().post(
        f"{BASE}/luma/tasks",
        json={"action": "retrieve", "id": task_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return response.text


if __name__ == "__main__":
    mcp.run()
