"""download_video as a stranger would use it: redirects, resolved addresses, remote callers,
quotas, a full disk and progress floods. Loopback only: names and addresses that are not the
configured API host stand in for "somewhere else", and must be refused before any connection."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio._core import _sockets as anyio_sockets
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from luma_mcp.api.errors import DownloadError
from luma_mcp.checks.urls import UnsafeUrl, check_caller_url, is_public_address, origin
from luma_mcp.core import download as media
from luma_mcp.core import guarded_http
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SAMPLE_MP4, ServerThread, Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of
from ..helpers.downloads import download, files_in, finished_task
from ..helpers.http import Listener

pytestmark = pytest.mark.anyio
MB = 1024 * 1024


class Victim(ServerThread):
    """An internal service that would happily serve a 'video' to anyone who asks."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[str] = []

        async def anything(request: Request) -> Response:
            self.requests.append(request.url.path)
            return Response(SAMPLE_MP4, media_type="video/mp4")

        super().__init__(Starlette(routes=[Route("/{path:path}", anything)]), host=host)


@pytest.fixture
def victim() -> Iterator[Victim]:
    with Victim() as server:
        yield server


@pytest.fixture
def listener() -> Iterator[Listener]:
    one = Listener("127.0.0.1")
    yield one
    one.close()


def settings_for(sim_server: SimulatorServer, **env: Any) -> Any:
    return make_settings(sim_server.url, LUMA_REQUEST_TIMEOUT=3, **env)


# --- item 8: every hop checked, addresses checked after resolution ----------------------


async def test_a_redirect_to_another_local_service_is_not_followed(
    sim_server: SimulatorServer, victim: Victim, private_folders: Path
) -> None:
    async with Client(create_server(settings_for(sim_server), schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        sim_server.simulator.inject("redirect", f"/media/{task.task_id}.mp4", location=f"{victim.url}/admin/secret")
        result = await download(mcp, task_id=task.task_id)
    assert result.is_error and "redirected elsewhere" in text_of(result) and "not https" in text_of(result)
    assert victim.requests == [] and files_in(private_folders / "videos") == []


@pytest.mark.parametrize(
    ("location", "says"),
    [("https://[::1/x", "RemoteProtocolError"), ("https://user:pw@localhost:1/v.mp4", "has no plain host")],
)
async def test_a_redirect_to_a_malformed_url_is_refused_clearly(
    sim_server: SimulatorServer, private_folders: Path, location: str, says: str
) -> None:
    async with Client(create_server(settings_for(sim_server), schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        sim_server.simulator.inject("redirect", f"/media/{task.task_id}.mp4", location=location)
        result = await download(mcp, task_id=task.task_id)
    assert result.is_error and says in text_of(result), text_of(result)
    assert files_in(private_folders / "videos") == []


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "[::ffff:127.0.0.1]"])
async def test_https_to_a_name_or_address_that_is_loopback_never_connects(
    sim_server: SimulatorServer, listener: Listener, private_folders: Path, host: str
) -> None:
    """https passes the URL rule; the address it resolves to must not. The redirect hop and
    the first hop both: nothing may even open a connection."""
    target = Listener("127.0.0.2") if host == "127.0.0.2" else listener
    try:
        async with Client(create_server(settings_for(sim_server), schedule=FAST_SCHEDULE)) as mcp:
            task = await finished_task(mcp)
            where = f"https://{host}:{target.port}/v.mp4"
            sim_server.simulator.inject("redirect", f"/media/{task.task_id}.mp4", location=where)
            result = await download(mcp, task_id=task.task_id)
        assert result.is_error and "not a public address" in text_of(result), text_of(result)
        assert target.connections() == 0 and files_in(private_folders / "videos") == []
    finally:
        if target is not listener:
            target.close()


async def test_a_result_url_on_a_loopback_name_never_connects(listener: Listener, private_folders: Path) -> None:
    simulator = Simulator(queue_seconds=0, processing_seconds=0, media_base=f"https://localhost:{listener.port}")
    with SimulatorServer(simulator) as sim:
        async with Client(create_server(make_settings(sim.url, LUMA_REQUEST_TIMEOUT=3), schedule=FAST_SCHEDULE)) as mcp:
            task = await finished_task(mcp)
            result = await download(mcp, task_id=task.task_id)
    assert result.is_error and "localhost resolves to" in text_of(result) and "video_url" in text_of(result)
    assert listener.connections() == 0 and files_in(private_folders / "videos") == []


async def test_redirects_on_the_api_host_are_followed_a_few_times(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim = sim_server.simulator
    async with Client(create_server(settings_for(sim_server), schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        path = f"/media/{task.task_id}.mp4"
        sim.inject("redirect", path, location=path, times=2)  # relative, twice, then the file
        saved = await download(mcp, task_id=task.task_id)
        assert not saved.is_error, text_of(saved)
        assert Path(saved.structured_content["path"]).read_bytes() == SAMPLE_MP4
        sim.inject("redirect", path, location=path, times=10)
        looping = await download(mcp, task_id=task.task_id, filename="again")
    assert looping.is_error and "redirected more than 5 times" in text_of(looping)
    assert sim.count(path) == 3 + 6  # the first download's three hops, then six of the ten
    assert files_in(private_folders / "videos") == [f"luma-{task.task_id}.mp4"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0",  # noqa: S104
        "169.254.169.254", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
        "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1",
        "64:ff9b::a9fe:a9fe", "fe80::1%eth0",
    ],
)  # fmt: skip
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


API_ORIGIN_URL = "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("http://127.0.0.1:8123/media/v.mp4", True),
        ("HTTP://127.0.0.1.:8123/media/v.mp4", True),  # scheme case and a trailing dot
        ("http://127.0.0.1:8124/media/v.mp4", False),  # another port
        ("http://127.0.0.1/media/v.mp4", False),  # no port is http's 80, not the API's
        ("http://127.0.0.2:8123/media/v.mp4", False),  # another host
    ],
)
def test_the_apis_own_origin_is_one_rule_for_downloads_and_caller_urls(url: str, own: bool) -> None:
    """Plain http is allowed to the API's own host and port only, read the same way by the
    download hop check and the caller URL check (`urls.origin`)."""
    assert (origin(url) == origin(API_ORIGIN_URL)) is own
    if own:
        guarded_http.check_url(url, API_ORIGIN_URL)
        check_caller_url("video_url", url, allowed_origins={origin(API_ORIGIN_URL)})
    else:
        with pytest.raises(DownloadError, match="is not https"):
            guarded_http.check_url(url, API_ORIGIN_URL)
        with pytest.raises(UnsafeUrl, match="cannot reach"):
            check_caller_url("video_url", url, allowed_origins={origin(API_ORIGIN_URL)})


async def test_save_refuses_a_bad_first_hop_before_touching_the_disk(tmp_path: Path) -> None:
    """`download.save` checks the URL it is given before anything else, as it checks each redirect:
    its callers need no check of their own."""
    folder = tmp_path / "not-yet"
    async with guarded_http.guarded_client(API_ORIGIN_URL, 5) as http:
        with pytest.raises(DownloadError, match="is not https"):
            await media.save(
                http,
                "http://127.0.0.2:8123/v.mp4",
                folder / "v.mp4",
                accept=("video/",),
                max_bytes=MB,
                overwrite=False,
                api_base_url=API_ORIGIN_URL,
            )
    assert not folder.exists()


# --- item 7: remote callers, quotas ---------------------------------------------------


async def test_remote_quota_in_files_and_bytes(sim_server: SimulatorServer, private_folders: Path) -> None:
    folder = private_folders / "videos"
    on = {"LUMA_HTTP_DOWNLOADS": "true"}
    files = settings_for(sim_server, **on, LUMA_HTTP_DOWNLOAD_QUOTA_FILES=2)
    async with Client(create_server(files, schedule=FAST_SCHEDULE, remote=True)) as mcp:
        task = await finished_task(mcp)
        for name in ("a", "b"):
            assert not (await download(mcp, task_id=task.task_id, filename=name)).is_error
        third = await download(mcp, task_id=task.task_id, filename="c")
        assert third.is_error and "LUMA_HTTP_DOWNLOAD_QUOTA_FILES" in text_of(third)
        assert "video_url" in text_of(third)
        replaced = await download(mcp, task_id=task.task_id, filename="a", overwrite=True)  # takes no new place
        assert not replaced.is_error, text_of(replaced)
    assert files_in(folder) == ["a.mp4", "b.mp4"]

    limit_mb = 1.5 * len(SAMPLE_MP4) / MB  # room for one sample and a half
    size = settings_for(sim_server, **on, LUMA_HTTP_DOWNLOAD_QUOTA_MB=limit_mb)
    for path in folder.iterdir():
        path.unlink()
    async with Client(create_server(size, schedule=FAST_SCHEDULE, remote=True)) as mcp:
        task = await finished_task(mcp)
        assert not (await download(mcp, task_id=task.task_id, filename="one")).is_error
        second = await download(mcp, task_id=task.task_id, filename="two")
        assert second.is_error and "LUMA_HTTP_DOWNLOAD_QUOTA_MB" in text_of(second)
    assert files_in(folder) == ["one.mp4"]


async def test_a_video_is_not_saved_when_its_thumbnail_would_not_fit(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    settings = settings_for(sim_server, LUMA_HTTP_DOWNLOADS="true", LUMA_HTTP_DOWNLOAD_QUOTA_FILES=3)
    async with Client(create_server(settings, schedule=FAST_SCHEDULE, remote=True)) as mcp:
        task = await finished_task(mcp)
        assert not (await download(mcp, task_id=task.task_id, filename="a", include_thumbnail=True)).is_error
        refused = await download(mcp, task_id=task.task_id, filename="b", include_thumbnail=True)
        assert refused.is_error and "may hold 3" in text_of(refused)
        assert not (await download(mcp, task_id=task.task_id, filename="b")).is_error  # the video alone fits
    assert files_in(private_folders / "videos") == ["a.jpg", "a.mp4", "b.mp4"]


async def test_stdio_keeps_saving_without_a_quota(sim_server: SimulatorServer, private_folders: Path) -> None:
    tight = settings_for(sim_server, LUMA_HTTP_DOWNLOAD_QUOTA_FILES=1)  # applies to HTTP callers only
    async with Client(create_server(tight, schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        for name in ("a", "b", "c"):
            result = await download(mcp, task_id=task.task_id, filename=name)
            assert not result.is_error, text_of(result)
    assert files_in(private_folders / "videos") == ["a.mp4", "b.mp4", "c.mp4"]


# --- items 7 and 9: a full disk is an explained error, and nothing else breaks -----------


async def test_a_download_that_would_eat_the_reserve_is_refused(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    greedy = settings_for(sim_server, LUMA_DOWNLOAD_RESERVE_MB=1e12)  # more than any disk has free
    async with Client(create_server(greedy, schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        result = await download(mcp, task_id=task.task_id)
        assert result.is_error and "LUMA_DOWNLOAD_RESERVE_MB" in text_of(result) and "free" in text_of(result)
        assert not (await mcp.call_tool("generate_video", {"prompt": "still works", "wait_seconds": 0})).is_error
    assert files_in(private_folders / "videos") == []


@pytest.mark.parametrize("remote", [False, True])
async def test_a_download_folder_that_cannot_be_written_is_named(
    sim_server: SimulatorServer, private_folders: Path, remote: bool
) -> None:
    not_a_folder = private_folders / "videos.txt"
    not_a_folder.write_text("a file where the folder should be")
    env = {"LUMA_DOWNLOAD_DIR": str(not_a_folder), "LUMA_HTTP_DOWNLOADS": "true"}
    async with Client(create_server(settings_for(sim_server, **env), schedule=FAST_SCHEDULE, remote=remote)) as mcp:
        task = await finished_task(mcp)
        result = await download(mcp, task_id=task.task_id)
    assert result.is_error and "LUMA_DOWNLOAD_DIR" in text_of(result) and str(not_a_folder) in text_of(result)
    assert "not a folder" in text_of(result)
    assert not_a_folder.read_text() == "a file where the folder should be"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """A factory of tiny tmpfs mounts (root only): a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mounted: list[Path] = []

    def make(megabytes: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


@pytest.mark.parametrize(
    ("disk_mb", "reserve_mb", "says"),
    [
        pytest.param(2, 0, "is full", id="disk-full"),
        # No announced length: the check before cannot know, the checks while writing stop it.
        pytest.param(8, 4, "LUMA_DOWNLOAD_RESERVE_MB", id="reserve-while-writing"),
    ],
)
async def test_a_disk_running_out_is_explained_and_leaves_nothing(
    sim_server: SimulatorServer, small_disk: Any, private_folders: Path, disk_mb: int, reserve_mb: int, says: str
) -> None:
    disk = small_disk(disk_mb)
    settings = settings_for(sim_server, LUMA_DOWNLOAD_DIR=str(disk), LUMA_DOWNLOAD_RESERVE_MB=reserve_mb)
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        sim_server.simulator.inject("large_video", f"/media/{task.task_id}.mp4", size=2 * disk_mb * MB)
        result = await download(mcp, task_id=task.task_id)
        assert result.is_error and says in text_of(result) and "LUMA_DOWNLOAD_DIR" in text_of(result), text_of(result)
        assert files_in(disk) == []  # no partial file
        # The server carries on: submits work, and the next download (of a file that fits) too.
        assert not (await mcp.call_tool("generate_video", {"prompt": "after", "wait_seconds": 0})).is_error
        assert not (await download(mcp, task_id=task.task_id)).is_error
    assert files_in(disk) == [f"luma-{task.task_id}.mp4"]


# --- item 12: progress a few times a second -------------------------------------------


async def test_progress_is_a_few_per_second_and_ends_with_the_total(sim_server: SimulatorServer) -> None:
    size = 48 * MB  # 768 chunks of 64 kB
    async with Client(create_server(settings_for(sim_server), schedule=FAST_SCHEDULE)) as mcp:
        task = await finished_task(mcp)
        sim_server.simulator.inject("large_video", f"/media/{task.task_id}.mp4", size=size)
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        started = time.monotonic()
        result = await mcp.call_tool("download_video", {"task_id": task.task_id}, progress_callback=on_progress)
        elapsed = time.monotonic() - started
    assert not result.is_error, text_of(result)
    assert seen and seen[-1] == size
    assert len(seen) <= 4 * elapsed + 2, (len(seen), elapsed)  # one per 0.25 s, and the last


# --- item 8: no gap between the check and the connection ------------------------------


async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answers a harmless address to the check and the victim's
    address to any later lookup. The connection must go to the address checked, with no
    second lookup in between. (127.0.0.3 stands in for a public address; nothing leaves
    loopback.)"""
    checked = Listener("127.0.0.3")
    victim = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    victim.bind(("127.0.0.1", checked.port))  # the same port: only the address tells them apart
    victim.listen(8)
    victim.setblocking(False)
    real_getaddrinfo = anyio.getaddrinfo
    lookups: list[str] = []

    async def rebinding_dns(host: Any, port: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return await real_getaddrinfo(host, port, **kwargs)
        lookups.append(host)
        address = "127.0.0.3" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(anyio, "getaddrinfo", rebinding_dns)
    monkeypatch.setattr(anyio_sockets, "getaddrinfo", rebinding_dns)  # what anyio.connect_tcp would ask
    monkeypatch.setattr(guarded_http, "is_public_address", lambda address: address == "127.0.0.3")
    try:
        backend = guarded_http._GuardedBackend(exempt=("api.example", 443))
        stream = await backend.connect_tcp("rebind.example", checked.port, timeout=5)
        await stream.aclose()
        assert lookups == ["rebind.example"] and checked.connections() == 1
        with pytest.raises(DownloadError, match=r"resolves to 127\.0\.0\.1"):  # the next lookup is checked too
            await backend.connect_tcp("rebind.example", checked.port, timeout=5)
        with pytest.raises(BlockingIOError):
            victim.accept()  # nothing ever reached the victim
    finally:
        checked.close()
        victim.close()
