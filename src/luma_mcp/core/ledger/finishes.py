"""Waking the calls that wait on a task the moment the ledger records it finished.

A wait (`waiting.wait_for_tasks`) watches its tasks here and sleeps until its next poll or
until one of them is announced: by this process's own `record` (a callback received, another
call's poll), or, with PostgreSQL, by any replica's, whose NOTIFY the listener turns into a
`wake` here. A wake only makes the waiter look again, and a finished task is then read from
the ledger, so a wake that means nothing costs no upstream read. Registrations live only as
long as the waits that made them; everything runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

import anyio


class Finishes:
    def __init__(self) -> None:
        self._waiting: dict[str, set[anyio.Event]] = {}

    @contextmanager
    def watch(self, task_ids: Collection[str]) -> Iterator[anyio.Event]:
        """An event set when any of these tasks is announced finished, until the block ends."""
        event = anyio.Event()
        for task_id in task_ids:
            self._waiting.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            for task_id in task_ids:
                waiters = self._waiting.get(task_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiting[task_id]

    def wake(self, task_ids: Iterable[str]) -> None:
        """Wake this process's waits on these tasks (the ledger has them finished)."""
        for task_id in task_ids:
            for event in self._waiting.get(task_id, ()):
                event.set()

    def wake_all(self) -> None:
        """Wake every wait: announcements may have been missed (a listener reconnected)."""
        for waiters in self._waiting.values():
            for event in waiters:
                event.set()

    def watched(self) -> int:
        """How many tasks some wait is watching (for tests and the health of the process)."""
        return len(self._waiting)
