"""The MCP server: what it is made of, in the order a request meets it.

- `core.state`: what the process shares (settings, API client, ledger), opened by the lifespan;
- `boundary`: whose service a call gets (`caller`), how failures and results read;
- `tools`, `resources`, `prompts`: what the model sees, each registered here in one line;
- `player`: the video player view for hosts with MCP Apps, and the app-only tool it polls;
- `task_extension`: task handles for the video tools, for clients that declare MCP Tasks;
- `schema`: the compact tool schemas tools/list sends; `ui/`: the player's page and script.

May import: `checks`, `config`, `api`, `core`.
"""

import inspect
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ListResourcesResult, ListToolsResult, PaginatedRequestParams, Tool
from pydantic import ValidationError

from luma_mcp import __version__
from luma_mcp.config import Settings
from luma_mcp.core.ledger import Ledger
from luma_mcp.core.state import AppState, open_state
from luma_mcp.core.waiting import PollSchedule
from luma_mcp.server.boundary import argument_error, unknown_arguments
from luma_mcp.server.player import SERVER_ICON, add_player, visible_resources, visible_tools
from luma_mcp.server.prompts import add_prompts
from luma_mcp.server.resources import add_resources
from luma_mcp.server.schema import compact_schema
from luma_mcp.server.task_extension import TasksExtension
from luma_mcp.server.tools import add_tools

if TYPE_CHECKING:
    from luma_mcp.core.callback_urls import CallbackIssuer  # HTTP only

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Makes short videos (about 5 s each) with Luma Dream Machine. generate_video and extend_video each start "
    "one paid generation (1-5 minutes) and wait up to wait_seconds for it. If the result is pending or "
    "processing, call get_task with its task_id and wait_seconds until it finishes; never repeat the submit, "
    "that pays twice. Give the user the video_url; pass a result's video_id to extend_video to continue it. "
    "list_tasks finds earlier videos (also from past conversations); download_video saves one to disk, "
    "since result URLs expire. The prompts video_prompt and storyboard help write good requests."
)

# For the video tools (those with a prompt), after the list of their arguments.
_NO_SUCH_SETTING = (
    " (Luma takes no duration, resolution, seed or negative prompt: describe what you want in the prompt)"
)


def create_server(
    settings: Settings,
    *,
    schedule: PollSchedule | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    stopping: threading.Event | None = None,
    remote: bool = False,
    ledger: Ledger | None = None,
    callbacks: "CallbackIssuer | None" = None,
) -> "LumaMCPServer":
    """The luma-mcp server, configured by `settings`. `schedule` overrides the poll timing
    (tests and benchmarks run the simulator fast; production reads it from settings);
    `token_verifier` and `auth` protect it when served over HTTP, and `stopping` ends
    waits early when that server shuts down (see `http_app`); `remote` says it is served over
    HTTP, to callers on other machines; `ledger`, one opened (and closed) by whoever passes
    it, shared with the sign-in; `callbacks`, over HTTP with a public URL, gives each submit
    its callback URL."""
    poll_schedule = schedule or PollSchedule.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with open_state(
            settings, poll_schedule, stopping=stopping, remote=remote, ledger=ledger, callbacks=callbacks
        ) as state:
            yield state

    mcp = LumaMCPServer(
        name="luma-mcp",
        title="Luma Dream Machine videos",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        token_verifier=token_verifier,
        auth=auth,
        icons=[SERVER_ICON],
        extensions=[add_player(settings), TasksExtension()],
    )
    add_tools(mcp, settings)
    add_resources(mcp)
    add_prompts(mcp)
    return mcp


class LumaMCPServer(MCPServer[AppState]):
    """`MCPServer` whose tools/list carries compact schemas and which refuses unknown arguments."""

    async def list_tools(self) -> list[Tool]:
        return [
            tool.model_copy(
                update={
                    "description": inspect.cleandoc(tool.description or ""),
                    "input_schema": compact_schema(tool.input_schema),
                    "output_schema": compact_schema(tool.output_schema),
                }
            )
            for tool in await super().list_tools()
        ]

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        # The SDK's handlers list everything; the view and its app-only tool are for clients that render it.
        return ListToolsResult(tools=visible_tools(await self.list_tools(), ctx))

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        return ListResourcesResult(resources=visible_resources(await self.list_resources(), ctx))

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        # The SDK silently drops unknown arguments; a model that sent `duration` or `seed`
        # believes it was applied. Say so instead.
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = list(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - set(known))
            if unknown:
                hint = _NO_SUCH_SETTING if "prompt" in known else ""
                raise ToolError(unknown_arguments(name, unknown, known, hint))
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            # A bug, not a refusal: log it whole, and still tell the model something it can use
            # (the SDK's own text would be a bare "Error executing tool").
            log.error("%s crashed", name, exc_info=exc.__cause__ or exc)
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            raise ToolError(
                f"{name} failed inside luma-mcp ({cause}); the details are in the server's log. "
                "Anything already submitted is in list_tasks: check there before submitting again."
            ) from None
        except ToolError as exc:
            # Only the SDK's argument validation raises a ToolError caused by a ValidationError
            # (the tool body's own are wrapped apart); kept as the cause, so the SDK logs field names.
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            raise ToolError(argument_error(name, tool.parameters, exc.__cause__)) from exc.__cause__

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        # The SDK answers a missing or unknown prompt argument with "Internal server error".
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is not None:
            given = set(arguments or {})
            known = [arg.name for arg in prompt.arguments or []]
            if unknown := sorted(given - set(known)):
                raise MCPError(INVALID_PARAMS, unknown_arguments(name, unknown, known))
            missing = [arg.name for arg in prompt.arguments or [] if arg.required and arg.name not in given]
            if missing:
                required = {"type": "object", "properties": {n: {"type": "string"} for n in missing}}
                problems = [{"type": "missing", "loc": (n,), "msg": "", "input": arguments or {}} for n in missing]
                error = ValidationError.from_exception_data(name, problems)  # type: ignore[arg-type]
                raise MCPError(INVALID_PARAMS, argument_error(name, required, error))
        return await super().get_prompt(name, arguments, context)
