"""download_video end to end: real bytes from the simulator, and every way it must refuse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mcp import Client

from luma_mcp.core.results import TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SAMPLE_JPEG, SAMPLE_MP4, Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of
from ..helpers.downloads import download, files_in, finished_task

pytestmark = pytest.mark.anyio


async def test_saves_the_video_and_thumbnail(mcp_client: Client, private_folders: Path) -> None:
    task = await finished_task(mcp_client)
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    result = await mcp_client.call_tool(
        "download_video", {"task_id": task.task_id, "include_thumbnail": True}, progress_callback=on_progress
    )
    assert not result.is_error, text_of(result)
    saved = result.structured_content
    assert saved is not None
    video = Path(saved["path"])
    assert video.parent == private_folders / "videos" and video.name == f"luma-{task.task_id}.mp4"
    assert video.read_bytes() == SAMPLE_MP4
    assert saved["sha256"] == hashlib.sha256(SAMPLE_MP4).hexdigest() and saved["size_bytes"] == len(SAMPLE_MP4)
    assert Path(saved["thumbnail_path"]).read_bytes() == SAMPLE_JPEG
    assert files_in(video.parent) == sorted([video.name, f"luma-{task.task_id}.jpg"])  # no .part left
    assert reports and reports[-1][0] == len(SAMPLE_MP4) and reports[-1][1] == len(SAMPLE_MP4)
    assert "Downloading task" in (reports[-1][2] or "")
    assert str(video) in text_of(result) and saved["sha256"][:16] in text_of(result)


async def test_never_overwrites_unless_asked(mcp_client: Client, private_folders: Path) -> None:
    task = await finished_task(mcp_client)
    folder = private_folders / "videos"
    folder.mkdir()
    existing = folder / "keep.mp4"
    existing.write_bytes(b"precious")
    refused = await download(mcp_client, task_id=task.task_id, filename="keep.mp4")
    assert refused.is_error and "already exists" in text_of(refused) and "overwrite=true" in text_of(refused)
    assert existing.read_bytes() == b"precious" and files_in(folder) == ["keep.mp4"]
    replaced = await download(mcp_client, task_id=task.task_id, filename="keep", overwrite=True)
    assert not replaced.is_error and existing.read_bytes() == SAMPLE_MP4


@pytest.mark.parametrize(
    "filename", ["../escape", "../../etc/passwd", "/tmp/absolute", "sub/dir", "..", ".hidden", "a\\b", "x\x00y"]
)
async def test_file_names_cannot_leave_the_folder(mcp_client: Client, private_folders: Path, filename: str) -> None:
    task = await finished_task(mcp_client)
    before = files_in(private_folders)
    result = await download(mcp_client, task_id=task.task_id, filename=filename)
    assert result.is_error and "plain file name" in text_of(result)
    assert files_in(private_folders) == before


async def test_refuses_to_write_through_a_link(mcp_client: Client, private_folders: Path) -> None:
    task = await finished_task(mcp_client)
    folder = private_folders / "videos"
    folder.mkdir()
    outside = private_folders / "outside.mp4"
    outside.write_bytes(b"not yours")
    (folder / "link.mp4").symlink_to(outside)
    result = await download(mcp_client, task_id=task.task_id, filename="link.mp4", overwrite=True)
    assert result.is_error and "symbolic link" in text_of(result)
    assert outside.read_bytes() == b"not yours"


async def test_size_cap(sim_server: SimulatorServer, private_folders: Path) -> None:
    settings = make_settings(sim_server.url, LUMA_MAX_DOWNLOAD_MB=0.001)  # about 1 kB; the sample is 1.7 kB
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        task = await finished_task(client)
        result = await download(client, task_id=task.task_id)
    assert result.is_error and "LUMA_MAX_DOWNLOAD_MB" in text_of(result)
    assert files_in(private_folders / "videos") == []


async def test_a_transfer_cut_short_leaves_nothing(mcp_client: Client, sim: Simulator, private_folders: Path) -> None:
    task = await finished_task(mcp_client)
    sim.inject("drop_body", f"/media/{task.task_id}.mp4")
    result = await download(mcp_client, task_id=task.task_id)
    assert result.is_error and "broke off" in text_of(result)
    assert files_in(private_folders / "videos") == []
    retry = await download(mcp_client, task_id=task.task_id)  # the next try works
    assert not retry.is_error


async def test_a_page_instead_of_a_video_is_refused(mcp_client: Client, sim: Simulator, private_folders: Path) -> None:
    task = await finished_task(mcp_client)
    sim.inject("not_video", f"/media/{task.task_id}.mp4")
    result = await download(mcp_client, task_id=task.task_id)
    assert result.is_error and "text/html" in text_of(result)
    assert files_in(private_folders / "videos") == []


async def test_unfinished_and_unknown_tasks(mcp_client: Client, sim: Simulator) -> None:
    sim.processing_seconds = 30
    pending = await mcp_client.call_tool("generate_video", {"prompt": "slow", "wait_seconds": 0})
    task_id = TaskResult.model_validate(pending.structured_content).task_id
    result = await download(mcp_client, task_id=task_id)
    assert result.is_error and "no video to save yet" in text_of(result) and "get_task" in text_of(result)
    unknown = await download(mcp_client, task_id="no-such-task")
    assert unknown.is_error and "No task with id no-such-task" in text_of(unknown)
    assert not any(r.path.startswith("/media/") for r in sim.requests)


async def test_only_the_tasks_own_https_urls_are_fetched(private_folders: Path) -> None:
    """A result pointing at plain http on some other host (say a metadata address) is not fetched."""
    with SimulatorServer(Simulator(queue_seconds=0, processing_seconds=0, media_base="http://169.254.169.254")) as sim:
        async with Client(create_server(make_settings(sim.url), schedule=FAST_SCHEDULE)) as client:
            task = await finished_task(client)
            assert task.video_url and task.video_url.startswith("http://169.254.169.254/")
            result = await download(client, task_id=task.task_id)
    assert result.is_error and "not https; refusing to fetch it" in text_of(result)
    assert files_in(private_folders / "videos") == []
