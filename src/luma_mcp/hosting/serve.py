"""Running the HTTP app under uvicorn: the connection budget, the start-up log, draining on SIGTERM."""

from __future__ import annotations

import logging
import threading

import uvicorn

from luma_mcp.config import Settings
from luma_mcp.core.waiting import SHUTDOWN_GRACE_SECONDS
from luma_mcp.hosting.app import create_http_app
from luma_mcp.hosting.limits import HEALTH_CONNECTIONS, ConnectionGuard, budget_connections
from luma_mcp.hosting.log_limits import rate_limit_logs
from luma_mcp.hosting.shutdown import DrainingServer

log = logging.getLogger(__name__)


def serve_http(settings: Settings, host: str, port: int) -> None:
    stopping = threading.Event()
    rate_limit_logs(logging.getLogger().handlers)
    budget = budget_connections(settings.http_max_connections)
    app = create_http_app(settings, host, port, stopping, max_connections=budget.max_connections)
    guard = ConnectionGuard(budget.max_connections, settings.http_read_timeout)
    log.info("serving MCP at http://%s:%d/mcp (auth: %s)", host, port, app.state.auth)
    log.info(
        "at most %d open connections; requests read within %d s; idle connections closed after %d s",
        budget.max_connections,
        settings.http_read_timeout,
        settings.http_keep_alive,
    )
    limits = app.state.in_flight.limits
    log.info(
        "at most %d requests in flight at /mcp, %d per tenant, %d per session",
        limits.total,
        limits.per_tenant,
        limits.per_session,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http=guard.protocol_class(),
        # MCP has no WebSocket transport, and an upgraded connection would leave the guard's
        # count: upgrade requests are answered as plain HTTP.
        ws="none",
        # uvicorn answers 503 when connections or requests in progress reach this. The guard
        # keeps connections at max_connections, but the ones it has just closed stay in
        # uvicorn's count for one more event-loop turn (up to a backlog of them): room for
        # those, so that uvicorn's limit only ever bounds requests in progress.
        limit_concurrency=budget.max_connections + HEALTH_CONNECTIONS + budget.backlog + 1,
        backlog=budget.backlog,
        timeout_keep_alive=settings.http_keep_alive,
        # On SIGTERM: see http_shutdown.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    DrainingServer(config, stopping, app.state.posts).run()
