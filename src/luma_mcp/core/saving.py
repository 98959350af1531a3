"""download_video's rules: which video may be saved, where, and how much a tenant may keep.

The file transfer itself (every hop's URL and address checked, size caps, atomic placing) is
`download`'s; this module decides what to fetch and the caps to fetch it under. Over HTTP the
file would land on the server, not with the caller: that is off unless the operator turns it
on, and then each tenant saves into their own folder, bounded in bytes and files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio

from luma_mcp.api.errors import ServiceError
from luma_mcp.api.models import TaskStatus
from luma_mcp.config import Settings
from luma_mcp.core import download
from luma_mcp.core.caller import Caller
from luma_mcp.core.guarded_http import guarded_client
from luma_mcp.core.results import SavedVideo, TaskResult
from luma_mcp.core.waiting import Report

MB = 1024 * 1024
_VIDEO_TYPES = ("video/", "application/octet-stream")


async def save_video(
    caller: Caller,
    settings: Settings,
    task_id: str,
    result: TaskResult | None,
    *,
    filename: str | None,
    include_thumbnail: bool,
    overwrite: bool,
    report: Report,
) -> SavedVideo:
    """Save the task's own video (never an arbitrary URL) into the caller's download folder."""
    if result is None:
        raise ServiceError(f"No task with id {task_id}. Check the id with list_tasks.")
    if result.status is not TaskStatus.SUCCEEDED or not result.video_url:
        raise ServiceError(
            f"Task {task_id} is {result.status.value}, so there is no video to save yet. "
            f'Wait for it with get_task(task_id="{task_id}", wait_seconds=...) first.'
        )
    if caller.remote and not settings.http_downloads:
        raise ServiceError(
            "download_video is off on this server: it is reached over HTTP, so a saved file would stay on the "
            f"server, not with you. Download the video yourself from its video_url (it expires within days): "
            f"{result.video_url}"
        )
    folder = caller.download_dir
    stem = filename or f"luma-{task_id}"
    video_target = download.safe_target(folder, stem, ".mp4")
    thumb_target = download.safe_target(folder, stem.removesuffix(".mp4"), ".jpg") if include_thumbnail else None

    async def save(
        url: str, target: Path, accept: tuple[str, ...], files: int, progress: Report | None
    ) -> download.SavedFile:
        # The quota reads the folder (a scan and a stat a file): off the event loop.
        max_bytes, hint = await anyio.to_thread.run_sync(
            _download_cap, settings, caller.remote, folder, target, overwrite, files
        )
        return await download.save(
            http,
            url,  # checked by `download` on this hop and every redirect
            target,
            accept=accept,
            max_bytes=max_bytes,
            overwrite=overwrite,
            api_base_url=settings.api_base_url,
            reserve_bytes=int(settings.download_reserve_mb * MB),
            cap_hint=hint,
            report=progress,
            label=f"Downloading task {task_id}",
        )

    async with (
        guarded_client(settings.api_base_url, settings.request_timeout) as http,
        download.one_at_a_time(folder) if caller.remote else contextlib.nullcontext(),
    ):
        with_thumb = thumb_target is not None and result.thumbnail_url is not None
        saved = await save(result.video_url, video_target, _VIDEO_TYPES, 1 + with_thumb, report)
        thumb = None
        if thumb_target is not None and result.thumbnail_url:
            thumb = await save(result.thumbnail_url, thumb_target, ("image/",), 1, None)  # progress: the video only
    return SavedVideo(
        task_id=task_id,
        path=str(saved.path),
        size_bytes=saved.size,
        sha256=saved.sha256,
        thumbnail_path=str(thumb.path) if thumb else None,
    )


def _download_cap(
    settings: Settings, remote: bool, folder: Path, target: Path, overwrite: bool, files: int
) -> tuple[int, str]:
    """The most bytes the next file may take, and what to do when it is too big: the size
    cap, and for an HTTP tenant also what is left of their quota (checked in turn with
    their other downloads, see `download.one_at_a_time`). `files`: how many files this
    call is still to save, so a video is not saved only for its thumbnail to be refused."""
    cap = int(settings.max_download_mb * MB)
    if not remote:
        return cap, "Raise LUMA_MAX_DOWNLOAD_MB to allow it."
    used_bytes, used_files = download.folder_usage(folder)
    if overwrite and target.is_file():  # replacing a file frees its bytes and its place
        used_bytes -= target.stat().st_size
        used_files -= 1
    quota_bytes = int(settings.http_download_quota_mb * MB)
    full = "No tool removes files: download the video from its video_url instead, or ask the operator to raise "
    if used_files + files > settings.http_download_quota_files:
        raise ServiceError(
            f"Not saved: your download folder on this server holds {used_files} files and may hold "
            f"{settings.http_download_quota_files}. "
            f"{full}LUMA_HTTP_DOWNLOAD_QUOTA_FILES."
        )
    if used_bytes >= quota_bytes:
        raise ServiceError(
            f"Not saved: your download folder on this server already holds {download.human_size(used_bytes)}, "
            f"its limit. {full}LUMA_HTTP_DOWNLOAD_QUOTA_MB."
        )
    if quota_bytes - used_bytes < cap:
        return quota_bytes - used_bytes, (
            f"Only {download.human_size(quota_bytes - used_bytes)} of your download quota on this server is "
            "left: download the video from its video_url instead, or ask the operator to raise "
            "LUMA_HTTP_DOWNLOAD_QUOTA_MB."
        )
    return cap, "Raise LUMA_MAX_DOWNLOAD_MB to allow it."
