"""A ``mosquitto_sub -v`` process whose printed messages can be awaited (no sleeps).

``async with MosquittoSub(broker, topics) as sub`` returns once the broker has logged the
subscription, so nothing published afterwards is missed; ``await sub.wait_for(match)``
returns the first printed ``(topic, payload)`` that ``match`` accepts, or fails with every
line seen so far once its timeout is over or the process has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence

from support.mosquitto import MOSQUITTO_SUB, Mosquitto

_IDS = itertools.count(1)


class MosquittoSub:
    """One ``mosquitto_sub -v`` on ``topics`` at ``qos`` (an async context manager)."""

    def __init__(self, broker: Mosquitto, topics: Sequence[str], *, qos: int = 1) -> None:
        self.broker = broker
        self.topics = list(topics)
        self.qos = qos
        self.client_id = f"e2e-sub-{next(_IDS)}"
        self.lines: list[str] = []
        """Every line printed so far (``topic payload``)."""
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> MosquittoSub:
        mark = len(self.broker.lines)
        topics = [arg for topic in self.topics for arg in ("-t", topic)]
        self.process = await asyncio.create_subprocess_exec(
            MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(self.broker.port), "-i", self.client_id,
            "-q", str(self.qos), "-v", *topics, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # mosquitto logs "<client id> <qos> <topic>" per subscribed topic (log_type subscribe).
            await asyncio.to_thread(
                self.broker.wait_for_log, f"{self.client_id} {self.qos} {self.topics[-1]}", 10.0,
                since=mark,
            )  # fmt: skip
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        rest, _ = await asyncio.wait_for(process.communicate(), 10)
        self.lines += rest.decode().splitlines()

    async def wait_for(
        self,
        match: Callable[[str, str], bool],
        what: str,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> tuple[str, str]:
        """Return the first ``(topic, payload)`` printed that ``match`` accepts."""
        for line in self.lines:
            topic, _, payload = line.partition(" ")
            if match(topic, payload):
                return topic, payload
        assert self.process is not None
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError(self._failure(what, "mosquitto_sub exited"))
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    topic, _, payload = line.partition(" ")
                    if match(topic, payload):
                        return topic, payload
        except TimeoutError:
            raise AssertionError(self._failure(what, f"nothing after {timeout:g} s")) from None

    def _failure(self, what: str, why: str) -> str:
        seen = "\n".join(self.lines) or "(nothing)"
        return f"mosquitto_sub printed no {what}: {why}; it printed:\n{seen}"
