"""Saving a finished video (or its thumbnail) to a local folder, safely.

The URL always comes from the task's own result (the caller never supplies one), and
every hop is checked the same way: https, or plain http to the API's own host and port
(where a simulator serves media). Redirects are followed by hand, at most
`MAX_REDIRECTS`, each hop checked again. Connections go through `guarded_client`: the host
name is resolved once, every address it resolves to must be public (no loopback, private,
link-local, shared, multicast, reserved or cloud metadata address, also when embedded in
IPv6), and the connection is made to exactly those checked addresses, so a name cannot
resolve to something else between the check and the connect. Only the API's own host and
port are exempt: the operator chose it. No proxy from the environment is used, and no
credentials are sent.

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
import functools
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio
import httpx

from luma_mcp import __version__, urls
from luma_mcp.errors import DownloadError
from luma_mcp.waiting import Report

if TYPE_CHECKING:  # httpx imports httpcore only when a transport is made: so do we
    import httpcore

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
PROGRESS_SECONDS = 0.25  # at most four progress notifications a second, and always the last
SPACE_CHECK_BYTES = 1024 * 1024  # how often (in bytes written) the free space is looked at again
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,150}$")
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class SavedFile:
    path: Path
    size: int
    sha256: str
    content_type: str


# --- which URLs and addresses may be fetched --------------------------------------------


def _origin(url: httpx.URL) -> tuple[str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.host.lower().rstrip("."), port


def check_url(url: str, api_base_url: str) -> httpx.URL:
    """The URL, if this hop may be fetched: https, or http to the API's own host and port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise DownloadError(f"The task's media URL {url!r} is not a valid URL; refusing to fetch it.") from None
    if not parsed.host or parsed.userinfo:
        raise DownloadError(f"The task's media URL {url} has no plain host; refusing to fetch it.")
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and _origin(parsed) == _origin(httpx.URL(api_base_url)):
        return parsed
    raise DownloadError(f"The task's media URL {url} is not https; refusing to fetch it.")


def is_public_address(address: str) -> bool:
    """Whether a resolved address (as getaddrinfo gives it) may be connected to: the one
    address rule, `urls.is_public_address`."""
    return urls.is_public_address(ipaddress.ip_address(address.split("%", 1)[0]))


class _GuardedBackend:
    """An httpcore network backend (its interface, by duck typing: httpcore is imported only
    when a download starts) that resolves each host once, refuses it unless every address is
    public, then connects to those same addresses (no second lookup an attacker's DNS could
    answer differently)."""

    def __init__(self, exempt: tuple[str, int]) -> None:
        import httpcore

        self._exempt = exempt
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host.lower().rstrip("."), port) == self._exempt:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            raise DownloadError(f"The media host {host} could not be resolved; try again later.") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not is_public_address(a)]
        if refused or not addresses:
            raise DownloadError(
                f"The media host {host} resolves to {', '.join(refused) or 'nothing'}, which is not a public "
                "address; refusing to connect. The task's result cannot be saved from here: use its video_url."
            )
        import httpcore

        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DownloadError("Downloads never use unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs), loaded once: loading takes tens of ms."""
    return httpx.create_ssl_context(trust_env=False)


def guarded_client(api_base_url: str, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for media downloads whose connections pass `_GuardedBackend`: no
    environment proxy (it would hide the real destination), no cookies or credentials."""
    import httpcore

    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; give its transport a pool built on ours (httpcore's
    # public API), with the same TLS verification httpx would use.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_tls_context(),
        max_connections=4,
        network_backend=cast("httpcore.AsyncNetworkBackend", _GuardedBackend(_origin(httpx.URL(api_base_url)))),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"luma-mcp/{__version__}"},
    )


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
    if await anyio.Path(target).exists() and not overwrite:
        raise DownloadError(f"{target} already exists. Pass overwrite=true to replace it, or choose a filename.")
    folder = target.parent
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        async with _get(http, url, api_base_url) as response:
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


@contextlib.asynccontextmanager
async def _get(http: httpx.AsyncClient, url: str, api_base_url: str) -> AsyncIterator[httpx.Response]:
    """GET `url`, following at most MAX_REDIRECTS redirects by hand, each hop checked."""
    current = check_url(url, api_base_url)
    for _ in range(MAX_REDIRECTS + 1):
        response = await http.send(http.build_request("GET", current), stream=True)
        if response.status_code not in _REDIRECTS or "location" not in response.headers:
            try:
                yield response
            finally:
                await response.aclose()
            return
        location = response.headers["location"]  # httpx has refused one that is not a valid URL
        await response.aclose()
        try:
            current = check_url(str(current.join(location)), api_base_url)
        except DownloadError as exc:
            raise DownloadError(f"{url} redirected elsewhere: {exc}") from None
    raise DownloadError(f"{url} redirected more than {MAX_REDIRECTS} times; not saved. Try again later.")


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
