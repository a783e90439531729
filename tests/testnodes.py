"""Node types used only by the tests: sleep, flaky, fail, echo (registered per test)."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.base import NodeContext
from nodes.errors import NodeError

CALLS: dict[str, int] = {}
_LOCK = threading.Lock()

TEST_NODE_TYPES = {
    "sleep": "testnodes:sleep",
    "flaky": "testnodes:flaky",
    "fail": "testnodes:fail",
    "echo": "testnodes:echo",
}


class SleepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0


class FlakyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    fail_times: int = 2
    retryable: bool = True


class FailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = "boom"
    retryable: bool = False


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="allow")


def _count(key: str) -> int:
    with _LOCK:
        CALLS[key] = CALLS.get(key, 0) + 1
        return CALLS[key]


class sleep:  # noqa: N801 - a node type module stand-in
    Config = SleepConfig

    @staticmethod
    def run(config: SleepConfig, ctx: NodeContext) -> dict[str, Any]:
        started = time.time()
        time.sleep(config.seconds)
        return {"started": started, "ended": time.time()}


class flaky:  # noqa: N801
    Config = FlakyConfig

    @staticmethod
    def run(config: FlakyConfig, ctx: NodeContext) -> dict[str, Any]:
        calls = _count(config.key)
        if calls <= config.fail_times:
            raise NodeError(f"flaky failure {calls}", retryable=config.retryable)
        return {"calls": calls, "attempt": ctx.attempt, "max_attempts": ctx.max_attempts}


class fail:  # noqa: N801
    Config = FailConfig

    @staticmethod
    def run(config: FailConfig, ctx: NodeContext) -> dict[str, Any]:
        ctx.log.info("about to fail with %s", config.message)
        raise NodeError(f"failed: {config.message}", retryable=config.retryable)


class echo:  # noqa: N801
    Config = EchoConfig

    @staticmethod
    def run(config: EchoConfig, ctx: NodeContext) -> dict[str, Any]:
        ctx.log.info("echo %s", config.model_dump())
        return config.model_dump()
