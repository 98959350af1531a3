"""How many client ID metadata documents are fetched at once (`client_documents`): in all, per
document host, and per requesting address.

A document's URL is named by whoever sends /authorize or /token, and a slow https host holds
a fetch for up to its timeout. With only a shared bound, a few such URLs held every slot and
every other client's sign-in waited, then failed. So a fetch takes, in this order, a slot of
its requester's address (`MAX_FETCHES_PER_REQUESTER`, IPv6: per /64), then one of its
document host (`MAX_FETCHES_PER_HOST`), then one of the `MAX_CONCURRENT_FETCHES` shared by
all. A fetch whose address or host has no slot free within `SLOT_WAIT_SECONDS` is not made
(`NoFetchSlot` says which): it never holds a shared slot meanwhile, so one slow host (or
one address) cannot keep another host's document from being fetched. Filling the shared
slots takes `MAX_CONCURRENT_FETCHES / MAX_FETCHES_PER_HOST` slow hosts named from as many
addresses.

The requester is the address `routes` puts in `requester` for the request being served;
none (a call from elsewhere) is bounded by host and in all only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar

import anyio

MAX_CONCURRENT_FETCHES = 10
MAX_FETCHES_PER_HOST = 2
MAX_FETCHES_PER_REQUESTER = 2
# A legitimate second fetch from one place finds a slot within this (documents take
# milliseconds); a flood's extra fetches give up after it, holding nothing.
SLOT_WAIT_SECONDS = 1.0

# The address (its `token_checks.client_key`) whose request is being served, if any.
requester: ContextVar[str | None] = ContextVar("luma_document_requester", default=None)


class NoFetchSlot(Exception):
    """No fetch slot was free for this document: the sentence says whose were taken."""


class _Turns:
    """At most `size` holders per key; a key is kept only while someone holds or waits for it."""

    def __init__(self, size: int, whose: str) -> None:
        self.size, self.whose = size, whose
        self._by_key: dict[str, _Key] = {}

    @asynccontextmanager
    async def turn(self, key: str, wait: float) -> AsyncIterator[None]:
        entry = self._by_key.setdefault(key, _Key(anyio.Semaphore(self.size)))
        entry.users += 1
        try:
            if not await _acquire(entry.semaphore, wait):
                raise NoFetchSlot(f"{self.size} fetches {self.whose} are already in progress")
            try:
                yield
            finally:
                entry.semaphore.release()
        finally:
            entry.users -= 1
            if not entry.users:
                del self._by_key[key]


class _Key:
    def __init__(self, semaphore: anyio.Semaphore) -> None:
        self.semaphore, self.users = semaphore, 0


class FetchSlots:
    """The three bounds, taken in turn (see the module's docstring)."""

    def __init__(
        self,
        *,
        total: int = MAX_CONCURRENT_FETCHES,
        per_host: int = MAX_FETCHES_PER_HOST,
        per_requester: int = MAX_FETCHES_PER_REQUESTER,
        wait: float = SLOT_WAIT_SECONDS,
    ) -> None:
        self.total, self.wait = total, wait
        self._shared = anyio.Semaphore(total)
        self._hosts = _Turns(per_host, "from this document's host")
        self._requesters = _Turns(per_requester, "for the requesting address")

    @asynccontextmanager
    async def slot(self, host: str, shared_wait: float) -> AsyncIterator[None]:
        """A fetch's slots, for a document on `host` asked for by `requester`'s address; the
        shared one waited for up to `shared_wait`. `NoFetchSlot` when one is not to be had."""
        async with AsyncExitStack() as held:
            address = requester.get()
            if address is not None:
                await held.enter_async_context(self._requesters.turn(address, self.wait))
            await held.enter_async_context(self._hosts.turn(host, self.wait))
            if not await _acquire(self._shared, shared_wait):
                raise NoFetchSlot(f"all {self.total} fetch slots stayed taken for {shared_wait:g} s")
            held.callback(self._shared.release)
            yield


async def _acquire(semaphore: anyio.Semaphore, wait: float) -> bool:
    """Whether a slot of `semaphore` was had, at once or within `wait` seconds."""
    try:
        semaphore.acquire_nowait()
    except anyio.WouldBlock:
        with anyio.move_on_after(wait):
            await semaphore.acquire()
            return True
        return False
    return True
