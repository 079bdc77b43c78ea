"""Does the broker answer? A probe thread feeding `finsent_broker_up` and the stages' idle clocks.

A poll that returns nothing is no proof that the broker answers: a frozen or partitioned broker keeps
its TCP connections open, kafka-python waits for its answer up to the consumer's request timeout
(305 s by default), and meanwhile `poll()` comes back empty-handed exactly as on an idle topic. So
`--exit-when-idle` took an outage for the end of the input, and `finsent_broker_up` (set only by
operations that failed) stayed 1. This thread sends an ApiVersions request (the cheapest request,
which every broker answers, before authentication too) on a connection of its own every
`PROBE_INTERVAL_S`, and counts the broker silent as soon as `PROBE_TIMEOUT_S` pass without an answer.
Measured against Tansu stopped with SIGSTOP: the probe answers in under 10 ms when the broker runs,
and the silence is seen 3.0 s after the last answer; the first probe after SIGCONT answers at once.

`BrokerHealth` is the pure bookkeeping (times are passed in): the idle clock counts only up to the
last answer, and starts again from zero when the broker answers after a silence.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipeline.metrics import Metrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 3.0
_STEP_S = 0.1  # granularity of the wait for an answer


class BrokerHealth:
    """When the broker last answered, and since when it has been answering without a gap."""

    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.last_answer_at: float | None = None
        self.answering_since: float | None = None
        self._lock = threading.Lock()

    def answered(self, now: float) -> bool:
        """Record an answer; True when it ends a silence (or is the first one)."""
        with self._lock:
            resumed = not self._answering(now)
            if resumed:
                self.answering_since = now
            self.last_answer_at = now
            return resumed

    def _answering(self, now: float) -> bool:
        return self.last_answer_at is not None and now - self.last_answer_at <= self.timeout_s

    def answering(self, now: float) -> bool:
        with self._lock:
            return self._answering(now)

    def idle_seconds(self, since: float, now: float) -> float | None:
        """Idle time since `since` (last input or assignment), counted only while the broker answered:
        up to its last answer, and from the start of the current answering spell. None before any."""
        with self._lock:
            if self.last_answer_at is None or self.answering_since is None:
                return None
            if not self._answering(now):
                return 0.0
            return max(0.0, min(now, self.last_answer_at) - max(since, self.answering_since))


class BrokerProbe:
    """The probe loop: a `kafka.KafkaClient` of its own, one ApiVersions request at a time."""

    def __init__(
        self,
        settings: Settings,
        health: BrokerHealth,
        metrics: Metrics,
        stop: threading.Event,
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self.settings, self.health, self.metrics, self.stop = settings, health, metrics, stop
        self.interval_s = interval_s
        self.client: Any = None
        self.thread = threading.Thread(target=self._loop, name="broker-probe", daemon=True)

    def start(self) -> BrokerProbe:
        self.thread.start()
        return self

    def join(self, timeout_s: float = 5.0) -> None:
        self.thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        was_up: bool | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                up = self.probe()
            except Exception as exc:  # never let health checking take the daemon down
                log.debug("broker probe: %s", exc)
                up = False
            if up:
                resumed = self.health.answered(time.monotonic()) and was_up is False
                if resumed:
                    log.info("broker answers again")
                self.metrics.broker_probe(True, resumed=resumed)
            else:
                if was_up is not False:
                    log.warning(
                        "broker %s: no answer within %.1fs; the idle clock is paused",
                        self.settings.bootstrap_servers,
                        self.health.timeout_s,
                    )
                self.metrics.broker_probe(False)
            was_up = up
            self.stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        self._close()

    def probe(self) -> bool:
        """One ApiVersions round trip within the timeout; False on silence or error."""
        from kafka.client_async import KafkaClient
        from kafka.protocol.api_versions import ApiVersionsRequest

        from pipeline.kafka_io import client_config

        deadline = time.monotonic() + self.health.timeout_s
        if self.client is None:
            timeout_ms = int(self.health.timeout_s * 1000)
            # api_version given: otherwise the constructor probes versions and blocks on a dead broker.
            self.client = KafkaClient(
                **client_config(self.settings, "finsent-probe"),
                request_timeout_ms=timeout_ms,
                api_version=(2, 0),
            )
        client = self.client
        node = client.least_loaded_node()
        if node is None:
            return False
        while not client.ready(node):
            if time.monotonic() >= deadline or self.stop.is_set():
                return False
            client.poll(timeout_ms=_STEP_S * 1000)
        future = client.send(node, ApiVersionsRequest[0]())
        while not future.is_done:
            if time.monotonic() >= deadline or self.stop.is_set():
                return False
            client.poll(timeout_ms=_STEP_S * 1000, future=future)
        return bool(future.succeeded())

    def _close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception as exc:  # closing must not mask the real exit reason
                log.debug("broker probe: close: %s", exc)
