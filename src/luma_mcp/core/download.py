"""Saving a finished video (or its thumbnail) to a local folder, safely.

The URL always comes from the task's own result (the caller never supplies one), and it is
fetched through `guarded_http` (whose `guarded_client` the caller opens): the URL
`save` is given is checked before anything touches the disk, and so is every redirect; every
address is resolved once and must be public; no proxy, no credentials.

The file name is a plain name inside the configured folder: no separators, no `..`, no
absolute paths, no links. Bytes are streamed to a hidden temporary file beside the target,
hashed on the way, checked against the size cap and the announced length, and only then
linked into place; any failure removes the temporary file, so no partial video is ever
left behind. An existing file is never overwritten unless asked. A download that would
leave less than the free-space reserve on the folder's disk is refused (checked before and
while writing), and a full disk or quota is a `DownloadError` saying what to do, so
whatever else shares the disk (the ledger) keeps room to work.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from luma_mcp.api.errors import DownloadError
from luma_mcp.core.guarded_http import check_url, checked_get
from luma_mcp.core.waiting import Report

__all__ = [
    "SavedFile",
    "folder_usage",
    "human_size",
    "one_at_a_time",
    "safe_target",
    "save",
]

CHUNK = 64 * 1024
PROGRESS_SECONDS = 0.25  # at most four progress notifications a second, and always the last
SPACE_CHECK_BYTES = 1024 * 1024  # how often (in bytes written) the free space is looked at again
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,150}$")


@dataclass(frozen=True)
class SavedFile:
    path: Path
    size: int
    sha256: str
    content_type: str


# --- names, space and quotas -----------------------------------------------------------


def safe_target(folder: Path, filename: str, suffix: str) -> Path:
    """`folder/filename` with `suffix`, refusing anything that could leave the folder."""
    name = filename.strip()
    if not name.lower().endswith(suffix):
        name += suffix
    if not _SAFE_NAME.match(name) or ".." in name:
        raise DownloadError(
            f"{filename!r} is not a plain file name. Use letters, digits, spaces, '.', '_', '-' or '()' "
            "only, with no folders: the file is always saved in the download folder."
        )
    target = folder / name
    if target.is_symlink():
        raise DownloadError(f"{target} is a symbolic link; refusing to write through it. Pick another name.")
    if target.resolve().parent != folder.resolve():
        raise DownloadError(f"{filename!r} would leave the download folder; pick a plain file name.")
    return target


def folder_usage(folder: Path) -> tuple[int, int]:
    """Bytes of every file directly in `folder` (temporary ones too), and how many saved files."""
    size = files = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                size += entry.stat(follow_symlinks=False).st_size
                files += not entry.name.startswith(".")
    return size, files


_folder_locks: dict[Path, tuple[anyio.Lock, int]] = {}


@contextlib.asynccontextmanager
async def one_at_a_time(folder: Path) -> AsyncIterator[None]:
    """Downloads into one folder take turns in this process, so a quota read before a
    download still holds while it runs."""
    lock, users = _folder_locks.get(folder) or (anyio.Lock(), 0)
    _folder_locks[folder] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = _folder_locks[folder]
        if users == 1:
            del _folder_locks[folder]
        else:
            _folder_locks[folder] = (lock, users - 1)


def _free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)  # as shutil.disk_usage, without importing shutil on the stdio path
    return stat.f_bavail * stat.f_frsize


def _low_space(folder: Path, free: int, reserve: int) -> str:
    return (
        f"Not saved: the disk holding {folder} would be left with less than the "
        f"{human_size(reserve)} kept free (LUMA_DOWNLOAD_RESERVE_MB); {human_size(free)} is free now. "
        "Free some space there or point LUMA_DOWNLOAD_DIR at a bigger disk, then try again."
    )


def _disk_error(folder: Path, exc: OSError) -> DownloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "is full" if exc.errno == errno.ENOSPC else "is over its disk quota"
        return DownloadError(
            f"Not saved: the disk holding {folder} {what}. Nothing was left behind. Free some space "
            "there or point LUMA_DOWNLOAD_DIR at a bigger disk, then try again."
        )
    why = "it is not a folder" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror
    return DownloadError(
        f"Not saved: writing to {folder} failed ({why or type(exc).__name__}). "
        "Point LUMA_DOWNLOAD_DIR at a folder this server can write to, then try again."
    )


# --- the transfer ----------------------------------------------------------------------


async def save(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    accept: tuple[str, ...],
    max_bytes: int,
    overwrite: bool,
    api_base_url: str,
    reserve_bytes: int = 0,
    cap_hint: str = "Raise LUMA_MAX_DOWNLOAD_MB to allow it.",
    report: Report | None = None,
    label: str = "Downloading",
) -> SavedFile:
    """Stream `url` into `target`; see the module docstring for the guarantees. Progress goes
    to `report` a few times a second (and once at the end), as "`label`: 1.2 MB of 5.0 MB"."""
    first_hop = check_url(url, api_base_url)  # before anything touches the disk
    if await anyio.Path(target).exists() and not overwrite:
        raise DownloadError(f"{target} already exists. Pass overwrite=true to replace it, or choose a filename.")
    folder = target.parent
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        async with checked_get(http, first_hop, api_base_url) as response:
            if response.status_code != 200:
                raise DownloadError(f"The file server answered HTTP {response.status_code} for {url}; try again later.")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not content_type.startswith(accept):
                raise DownloadError(
                    f"{url} is {content_type or 'of no stated type'}, not {' or '.join(accept)}: not saved."
                )
            announced = int(response.headers["content-length"]) if "content-length" in response.headers else None
            if announced is not None and announced > max_bytes:
                raise DownloadError(_too_big(announced, max_bytes, cap_hint))
            free = await anyio.to_thread.run_sync(_free_bytes, folder)
            if free - (announced or 0) < reserve_bytes:
                raise DownloadError(_low_space(folder, free, reserve_bytes))
            next_space_check = SPACE_CHECK_BYTES
            last_progress = time.monotonic()
            # File writes go to a worker thread: a large video must not stall other calls.
            async with await anyio.open_file(partial, "xb") as out:
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(_too_big(size, max_bytes, cap_hint))
                    if reserve_bytes and size >= next_space_check:
                        next_space_check = size + SPACE_CHECK_BYTES
                        free = await anyio.to_thread.run_sync(_free_bytes, folder)
                        if free - len(chunk) < reserve_bytes:
                            raise DownloadError(_low_space(folder, free, reserve_bytes))
                    digest.update(chunk)
                    await out.write(chunk)
                    if report is not None and time.monotonic() - last_progress >= PROGRESS_SECONDS:
                        last_progress = time.monotonic()
                        await report(size, announced, _progress_line(label, size, announced))
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
        if announced is not None and size != announced:
            raise DownloadError(f"The transfer ended after {size} of {announced} bytes; try again.")
        await anyio.to_thread.run_sync(_place, partial, target, overwrite)
        if report is not None:
            await report(size, announced, _progress_line(label, size, announced))
    except httpx.HTTPError as exc:
        raise DownloadError(f"The download broke off ({type(exc).__name__}) after {size} bytes; try again.") from None
    except OSError as exc:
        raise _disk_error(folder, exc) from None
    finally:
        with contextlib.suppress(OSError), anyio.CancelScope(shield=True):
            await anyio.Path(partial).unlink()
    return SavedFile(path=target, size=size, sha256=digest.hexdigest(), content_type=content_type)


def _place(partial: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(partial, target)
        return
    try:
        os.link(partial, target)  # atomic, and fails if someone created the target meanwhile
    except FileExistsError:
        raise DownloadError(f"{target} appeared while downloading; pass overwrite=true to replace it.") from None


def _progress_line(label: str, done: int, total: int | None) -> str:
    return f"{label}: {human_size(done)} of {human_size(total)}" if total else f"{label}: {human_size(done)}"


def human_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _too_big(size: int, max_bytes: int, hint: str) -> str:
    return (
        f"The file is larger than the download cap of {max_bytes / 1048576:g} MB ({size} bytes or more); "
        f"not saved. {hint}"
    )
