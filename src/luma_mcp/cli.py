"""`luma-mcp`: serve the tools over stdio or HTTP, against Ace Data Cloud or the built-in simulator."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import threading
from pathlib import Path

from pydantic import SecretStr, ValidationError

from luma_mcp import __version__
from luma_mcp.config import TOKEN_ENV, Settings, SettingsError
from luma_mcp.core.ledger import ledger_url_problem
from luma_mcp.server import create_server
from luma_mcp.stdio.transport import run_stdio

log = logging.getLogger("luma_mcp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="luma-mcp",
        description="MCP server that makes videos with Luma Dream Machine through Ace Data Cloud.",
    )
    parser.add_argument("--version", action="version", version=f"luma-mcp {__version__}")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="serve against a built-in simulator of the API (no token, no network, no cost)",
    )
    parser.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio (default: launched by a desktop host) or http (streamable HTTP at /mcp, for many users)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="with --transport http: address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="with --transport http: port (8000)")
    parser.add_argument(
        "--simulate-seconds",
        type=float,
        default=20.0,
        metavar="S",
        help="with --simulate: how long a simulated video takes to generate (default 20)",
    )
    return parser.parse_args(argv)


def configuration_problems(exc: ValidationError) -> str:
    """One line per problem, naming the setting; never the values (they may hold secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        message = error["msg"].removeprefix("Value error, ")
        setting = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {setting}: {message}" if setting else f"  {message}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # stdout is the protocol's: every word for people goes to stderr.
        print(f"luma-mcp: invalid configuration:\n{configuration_problems(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    if problem := ledger_url_problem(settings):
        print(f"luma-mcp: invalid configuration:\n{problem}", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    simulator = None
    scratch = contextlib.ExitStack()
    if args.simulate:
        from luma_mcp.simulator.app import Simulator, SimulatorServer  # only --simulate pays for importing it

        simulator = SimulatorServer(Simulator(queue_seconds=1.0, processing_seconds=args.simulate_seconds)).start()
        # Simulated tasks vanish with the simulator: keep them out of the real ledger.
        ledger_dir = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="luma-mcp-simulated-")))
        settings = settings.model_copy(
            update={
                "api_base_url": simulator.url,
                "api_token": SecretStr("simulator-token"),
                "ledger_path": ledger_dir / "ledger.sqlite3",
            }
        )
        log.info("simulating the Luma API at %s (videos take %.0f s)", simulator.url, args.simulate_seconds)
    elif settings.api_token is None and settings.auth_mode != "passthrough":
        log.warning(
            "%s is not set: the tools are listed but every call will ask for it. "
            "Set it in the MCP server's env, or run with --simulate to try without one.",
            TOKEN_ENV,
        )
    try:
        if args.transport == "http":
            from luma_mcp.hosting.errors import ConfigurationError
            from luma_mcp.hosting.serve import serve_http

            try:
                serve_http(settings, args.host, args.port)
            except (ConfigurationError, SettingsError) as exc:
                print(f"luma-mcp: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        else:
            stopping = threading.Event()  # set on SIGINT/SIGTERM: waiting calls answer with their task ids
            run_stdio(create_server(settings, stopping=stopping), stopping)
    finally:
        if simulator is not None:
            simulator.stop()
        scratch.close()


if __name__ == "__main__":
    main()
