"""The stdio server as a subprocess: the environment it gets (`server_env`), and a
hand-rolled MCP client over its stdio for what the SDK client hides: the process id
(to SIGKILL it), and every byte on stdout (which must all be protocol)."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]


class RawStdioServer:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "luma_mcp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._ids = itertools.count(1)
        self._inbox: queue.Queue[Message | BaseException | None] = queue.Queue()
        self.received: list[Message] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)  # anything but protocol on stdout is a failure
                assert message.get("jsonrpc") == "2.0", line
                self._inbox.put(message)
            except BaseException as exc:
                self._inbox.put(exc)
        self._inbox.put(None)

    def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int | None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        request_id = None if notify else next(self._ids)
        if request_id is not None:
            message["id"] = request_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return request_id

    def wait_for(self, matches: Callable[[Message], bool], timeout: float = 30) -> Message:
        while True:
            item = self._inbox.get(timeout=timeout)
            if item is None:
                raise EOFError("the server closed its stdout")
            if isinstance(item, BaseException):
                raise item
            self.received.append(item)
            if matches(item):
                return item

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Message:
        request_id = self.send(method, params)
        return self.wait_for(lambda m: m.get("id") == request_id, timeout)

    def initialize(self) -> Message:
        answer = self.call(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
        )
        self.send("notifications/initialized", notify=True)
        return answer

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> str:
        """Close stdin (the server exits) and return what it wrote to stderr."""
        _, stderr = self.proc.communicate(timeout=30)
        while (item := self._inbox.get(timeout=10)) is not None:  # the rest of stdout, read to the end
            if isinstance(item, BaseException):
                raise item
            self.received.append(item)
        return stderr


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACEDATACLOUD_", "LUMA_"))}
    private = {k: os.environ[k] for k in ("LUMA_LEDGER_PATH", "LUMA_DOWNLOAD_DIR")}  # from private_folders
    return {**env, **private, "LUMA_LOG_LEVEL": "INFO", **extra}
