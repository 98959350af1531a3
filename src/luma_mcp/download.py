"""Saving a finished video (or its thumbnail) to a local folder, safely.

The URL always comes from the task's own result (the caller never supplies one, so the
server cannot be made to fetch arbitrary addresses). The file name is a plain name inside
the configured folder: no separators, no `..`, no absolute paths, no links. Bytes are
streamed to a hidden temporary file beside the target, hashed on the way, checked against
the size cap and the announced length, and only then linked into place; any failure
removes the temporary file, so no partial video is ever left behind. An existing file is
never overwritten unless asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

CHUNK = 64 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,150}$")

Progress = Callable[[int, int | None], Awaitable[None]]


class DownloadError(Exception):
    """The download did not happen; the message says why and what to do. No file was left."""


@dataclass(frozen=True)
class SavedFile:
    path: Path
    size: int
    sha256: str
    content_type: str


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


async def save(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    accept: tuple[str, ...],
    max_bytes: int,
    overwrite: bool,
    progress: Progress | None = None,
) -> SavedFile:
    """Stream `url` into `target`; see the module docstring for the guarantees."""
    if await anyio.Path(target).exists() and not overwrite:
        raise DownloadError(f"{target} already exists. Pass overwrite=true to replace it, or choose a filename.")
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        async with http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise DownloadError(f"The file server answered HTTP {response.status_code} for {url}; try again later.")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not content_type.startswith(accept):
                raise DownloadError(
                    f"{url} is {content_type or 'of no stated type'}, not {' or '.join(accept)}: not saved."
                )
            announced = int(response.headers["content-length"]) if "content-length" in response.headers else None
            if announced is not None and announced > max_bytes:
                raise DownloadError(_too_big(announced, max_bytes))
            # File writes go to a worker thread: a large video must not stall other calls.
            async with await anyio.open_file(partial, "xb") as out:
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(_too_big(size, max_bytes))
                    digest.update(chunk)
                    await out.write(chunk)
                    if progress is not None:
                        await progress(size, announced)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
        if announced is not None and size != announced:
            raise DownloadError(f"The transfer ended after {size} of {announced} bytes; try again.")
        await anyio.to_thread.run_sync(_place, partial, target, overwrite)
    except httpx.HTTPError as exc:
        raise DownloadError(f"The download broke off ({type(exc).__name__}) after {size} bytes; try again.") from None
    finally:
        with contextlib.suppress(FileNotFoundError), anyio.CancelScope(shield=True):
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


def human_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _too_big(size: int, max_bytes: int) -> str:
    return (
        f"The file is larger than the download cap of {max_bytes / 1048576:g} MB ({size} bytes or more); "
        "not saved. Raise LUMA_MAX_DOWNLOAD_MB to allow it."
    )
