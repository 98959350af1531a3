"""The API client against the simulator over real loopback HTTP: bodies, retries, faults, secrets."""

from __future__ import annotations

import logging
import time

import anyio
import pytest
from pydantic import SecretStr

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import (
    LumaAuthError,
    LumaBalanceError,
    LumaConfigError,
    LumaConnectionError,
    LumaError,
    LumaModerationError,
    LumaRateLimitError,
    LumaRequestError,
    LumaServerError,
    LumaTimeoutError,
)
from luma_mcp.api.models import ExtendRequest, GenerateRequest, TaskStatus, derive_status
from luma_mcp.api.retries import RetryPolicy
from luma_mcp.simulator.app import REFUSE_MARKER, Simulator, SimulatorServer

from ..helpers.common import CANARY_TOKEN, FAST_RETRY
from ..helpers.http import free_port

pytestmark = pytest.mark.anyio

READ_FAULTS = ["429", "500", "502", "503", "504", "html", "empty", "truncated", "not_json_object", "drop"]


async def wait_until_done(luma: LumaClient, task_id: str) -> TaskStatus:
    with anyio.fail_after(5):
        while True:
            record = await luma.get_task(task_id)
            assert record is not None
            if (status := derive_status(record.response)).finished:
                return status
            await anyio.sleep(0.05)


async def test_submit_sends_async_and_no_null_fields(luma: LumaClient, sim: Simulator) -> None:
    accepted = await luma.submit(GenerateRequest(prompt="a red fox", aspect_ratio="9:16", loop=True))
    assert accepted.task_id in sim.tasks
    assert sim.submits() == [
        {"action": "generate", "prompt": "a red fox", "aspect_ratio": "9:16", "loop": True, "async": True}
    ]
    assert sim.requests[0].authorization == f"Bearer {CANARY_TOKEN}"


async def test_task_goes_pending_processing_succeeded(luma: LumaClient, sim: Simulator) -> None:
    task_id = (await luma.submit(GenerateRequest(prompt="waves"))).task_id
    seen: list[TaskStatus] = []
    record = None
    with anyio.fail_after(5):
        while not seen or seen[-1] is not TaskStatus.SUCCEEDED:
            record = await luma.get_task(task_id)
            assert record is not None
            seen.append(derive_status(record.response))
            await anyio.sleep(0.03)
    assert seen[0] is TaskStatus.PENDING and TaskStatus.PROCESSING in seen
    assert record is not None and record.response is not None and record.response.video_url and record.elapsed
    assert "user_id" not in record.model_dump()


async def test_failed_task_and_extend(luma: LumaClient) -> None:
    failing = (await luma.submit(GenerateRequest(prompt="x sim:fail"))).task_id
    assert await wait_until_done(luma, failing) is TaskStatus.FAILED
    ok = (await luma.submit(GenerateRequest(prompt="a"))).task_id
    assert await wait_until_done(luma, ok) is TaskStatus.SUCCEEDED
    record = await luma.get_task(ok)
    assert record is not None and record.response is not None and record.response.video_id
    extended = await luma.submit(ExtendRequest(prompt="more", video_id=record.response.video_id))
    assert await wait_until_done(luma, extended.task_id) is TaskStatus.SUCCEEDED


async def test_unknown_ids(luma: LumaClient) -> None:
    assert await luma.get_task("no-such-task") is None
    known = (await luma.submit(GenerateRequest(prompt="a"))).task_id
    batch = await luma.get_tasks([known, "no-such-task"])
    assert list(batch) == [known]


async def test_batch_is_one_request(luma: LumaClient, sim: Simulator) -> None:
    ids = [(await luma.submit(GenerateRequest(prompt=f"p{i}"))).task_id for i in range(5)]
    batch = await luma.get_tasks(ids)
    assert sorted(batch) == sorted(ids)
    assert sim.count("/luma/tasks") == 1
    with pytest.raises(ValueError, match="at most 50"):
        await luma.get_tasks([f"t{i}" for i in range(51)])


@pytest.mark.parametrize("fault", READ_FAULTS)
async def test_reads_retry_each_transient_fault(luma: LumaClient, sim: Simulator, fault: str) -> None:
    task_id = (await luma.submit(GenerateRequest(prompt="a"))).task_id
    sim.inject(fault, "/luma/tasks")  # type: ignore[arg-type]
    record = await luma.get_task(task_id)
    assert record is not None and record.id == task_id
    assert sim.count("/luma/tasks") == 2


async def test_reads_give_up_after_the_attempt_bound(luma: LumaClient, sim: Simulator) -> None:
    sim.inject("500", "/luma/tasks", times=10)
    with pytest.raises(LumaServerError) as caught:
        await luma.get_task("any")
    assert sim.count("/luma/tasks") == FAST_RETRY.attempts + 1
    assert caught.value.trace_id  # the last answer's trace id is kept


async def test_reads_honour_retry_after(luma: LumaClient, sim: Simulator) -> None:
    sim.inject("429", "/luma/tasks", retry_after=0.6)
    started = time.monotonic()
    assert await luma.get_task("any") is None
    assert time.monotonic() - started >= 0.6
    assert sim.count("/luma/tasks") == 2


async def test_retry_after_beyond_the_time_budget_is_not_waited(luma: LumaClient, sim: Simulator) -> None:
    sim.inject("429", "/luma/tasks", retry_after=30)  # FAST_RETRY allows 5 s in all
    started = time.monotonic()
    with pytest.raises(LumaRateLimitError, match="Wait 30 seconds"):
        await luma.get_task("any")
    assert time.monotonic() - started < 4  # neither the 30 s asked for nor the whole 5 s budget
    assert sim.count("/luma/tasks") == 1


async def test_reads_do_not_retry_client_errors(sim_server: SimulatorServer) -> None:
    sim_server.simulator.valid_tokens = {"right"}
    async with LumaClient(token=SecretStr("wrong"), base_url=sim_server.url, retry=FAST_RETRY) as luma:
        with pytest.raises(LumaAuthError, match="Check ACEDATACLOUD_API_TOKEN"):
            await luma.get_task("any")
        # A caller's own token (passthrough, or sealed at sign-in) is theirs to renew, not the setting.
        with pytest.raises(LumaAuthError, match="sign in again with a current token") as refused:
            await luma.with_token(SecretStr("also-wrong")).get_task("any")
        assert "ACEDATACLOUD_API_TOKEN" not in str(refused.value)
    assert sim_server.simulator.count("/luma/tasks") == 2


@pytest.mark.parametrize("fault", [*READ_FAULTS, "slow"])
async def test_submit_is_never_retried_once_sent(sim_server: SimulatorServer, fault: str) -> None:
    sim = sim_server.simulator
    sim.inject(fault, "/luma/videos", delay=2.0)  # type: ignore[arg-type]
    async with LumaClient(
        token=SecretStr(CANARY_TOKEN), base_url=sim_server.url, timeout=0.5, retry=FAST_RETRY
    ) as luma:
        with pytest.raises(LumaError):
            await luma.submit(GenerateRequest(prompt="a"))
    assert sim.count("/luma/videos") == 1


async def test_each_submit_opens_its_own_connection_and_reads_share_one(luma: LumaClient, sim: Simulator) -> None:
    """A pooled connection the server closes as a submit goes out would make a paid video look
    lost; a fresh connection per submit rules that out. Reads keep the pool (they retry)."""
    for number in range(3):
        accepted = await luma.submit(GenerateRequest(prompt=f"clip {number}"))
        await luma.get_task(accepted.task_id)
    submit_ports = [r.client_port for r in sim.requests if r.path == "/luma/videos"]
    read_ports = [r.client_port for r in sim.requests if r.path == "/luma/tasks"]
    assert len(set(submit_ports)) == 3 and None not in submit_ports
    assert len(set(read_ports)) == 1 and not set(read_ports) & set(submit_ports)


async def test_submit_answer_lost_after_the_task_started(luma: LumaClient, sim: Simulator) -> None:
    """The case that costs money: the server made the task but the answer never came."""
    sim.inject("drop", "/luma/videos", after_processing=True)
    with pytest.raises(LumaConnectionError) as caught:
        await luma.submit(GenerateRequest(prompt="a"))
    assert caught.value.request_sent
    assert "may have been started" in str(caught.value)
    assert len(sim.tasks) == 1 and sim.count("/luma/videos") == 1


async def test_submit_is_retried_when_the_connection_could_not_be_made() -> None:
    port = free_port()
    retry = RetryPolicy(attempts=6, backoff=0.1, total_seconds=10)
    async with LumaClient(token=SecretStr("t"), base_url=f"http://127.0.0.1:{port}", retry=retry) as luma:
        server = SimulatorServer(port=port)
        async with anyio.create_task_group() as tg:

            async def start_late() -> None:
                await anyio.sleep(0.25)  # the first attempts meet a closed port
                await anyio.to_thread.run_sync(server.start)

            tg.start_soon(start_late)
            accepted = await luma.submit(GenerateRequest(prompt="a"))
        try:
            assert accepted.task_id in server.simulator.tasks
            assert server.simulator.count("/luma/videos") == 1
        finally:
            server.stop()


async def test_connection_refused_everywhere() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with LumaClient(token=SecretStr("t"), base_url=url, retry=FAST_RETRY) as luma:
        with pytest.raises(LumaConnectionError) as caught:
            await luma.get_task("x")
    assert not caught.value.request_sent
    assert url in str(caught.value) and "ACEDATACLOUD_API_BASE_URL" in str(caught.value)


async def test_read_timeout_is_retried(sim_server: SimulatorServer) -> None:
    sim_server.simulator.inject("slow", "/luma/tasks", delay=1.0)
    async with LumaClient(token=SecretStr("t"), base_url=sim_server.url, timeout=0.3, retry=FAST_RETRY) as luma:
        assert await luma.get_task("x") is None
    assert sim_server.simulator.count("/luma/tasks") == 2


async def test_submit_timeout_says_the_video_may_exist(sim_server: SimulatorServer) -> None:
    sim_server.simulator.inject("slow", "/luma/videos", delay=1.0)
    async with LumaClient(token=SecretStr("t"), base_url=sim_server.url, timeout=0.3, retry=FAST_RETRY) as luma:
        with pytest.raises(LumaTimeoutError, match="may have been started"):
            await luma.submit(GenerateRequest(prompt="a"))


async def test_no_token_sends_nothing(sim_server: SimulatorServer) -> None:
    async with LumaClient(token=None, base_url=sim_server.url) as luma:
        with pytest.raises(LumaConfigError, match="ACEDATACLOUD_API_TOKEN"):
            await luma.submit(GenerateRequest(prompt="a"))
    assert sim_server.simulator.requests == []


@pytest.mark.parametrize(
    ("code", "cls"),
    [("invalid_token", LumaAuthError), ("token_mismatched", LumaAuthError), ("used_up", LumaBalanceError)],
)
async def test_account_errors_from_the_simulator(sim_server: SimulatorServer, code: str, cls: type[LumaError]) -> None:
    sim_server.simulator.token_errors["tok"] = code
    async with LumaClient(token=SecretStr("tok"), base_url=sim_server.url, retry=FAST_RETRY) as luma:
        with pytest.raises(cls) as caught:
            await luma.submit(GenerateRequest(prompt="a"))
    assert caught.value.code == code and caught.value.trace_id


async def test_moderation_and_validation_errors(luma: LumaClient) -> None:
    with pytest.raises(LumaModerationError, match="Rephrase the prompt"):
        await luma.submit(GenerateRequest(prompt=f"something {REFUSE_MARKER}"))
    with pytest.raises(LumaRequestError, match="video_url must be an http"):
        await luma.submit(ExtendRequest(video_url="ftp://example.com/v.mp4"))


async def test_the_token_never_leaks(sim_server: SimulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = sim_server.simulator
    messages: list[str] = []
    async with LumaClient(
        token=SecretStr(CANARY_TOKEN), base_url=sim_server.url, timeout=0.3, retry=FAST_RETRY
    ) as luma:
        messages.append(repr(luma))
        for fault in [*READ_FAULTS, "slow"]:
            sim.inject(fault, delay=1.0, times=10)  # type: ignore[arg-type]
            for call in (luma.get_task("x"), luma.submit(GenerateRequest(prompt="a"))):
                try:
                    await call
                except LumaError as exc:
                    messages += [str(exc), repr(exc), repr(exc.args)]
            sim.clear_faults()
        sim.token_errors[CANARY_TOKEN] = "invalid_token"
        try:
            await luma.get_task("x")
        except LumaError as exc:
            messages.append(str(exc))
    assert len(messages) > 20
    logged = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert logged, "the retries should have been logged"
    for text in messages + logged:
        assert CANARY_TOKEN not in text


async def test_a_token_echoed_by_the_api_is_redacted() -> None:
    """Should a proxy or the API ever echo the Authorization header, the token stops here."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from luma_mcp.simulator.app import ServerThread

    async def echo(request: Request) -> JSONResponse:
        seen = request.headers["authorization"]
        return JSONResponse({"error": {"code": "invalid_token", "message": f"bad {seen}"}}, status_code=401)

    with ServerThread(Starlette(routes=[Route("/luma/tasks", echo, methods=["POST"])])) as server:
        async with LumaClient(token=SecretStr(CANARY_TOKEN), base_url=server.url, retry=FAST_RETRY) as luma:
            with pytest.raises(LumaAuthError) as caught:
                await luma.get_task("x")
    assert "bad Bearer [redacted]" in str(caught.value)
    assert CANARY_TOKEN not in str(caught.value)
