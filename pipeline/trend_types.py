"""The data the trend folder takes and gives: scored events, its settings, emitted records, per-topic
gauges and restart snapshots. Plain frozen dataclasses with their validation; the folding itself is in
`pipeline.trends`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from models.errors import ConfigError, FinsentError
from pipeline.records import iso_utc as records_iso_utc
from pipeline.spikes import SpikeParams, SpikeState
from pipeline.windows import SENTIMENTS, Headline

Outcome = Literal["counted", "late", "duplicate", "replayed"]
KEY_TYPES = ("topic", "ticker")
COUNT_BY = ("stories", "messages")


class EventError(FinsentError):
    """A scored event is malformed (the message names its id and the field at fault)."""


@dataclass(frozen=True)
class ScoredEvent:
    """One scored message, as read back from news.scored."""

    id: str
    topic: str
    sentiment: str  # "negative" | "neutral" | "positive"
    score: float  # p_positive - p_negative, in [-1, 1]
    event_time_ms: int  # published_at (or the Kafka timestamp) in epoch milliseconds
    story: str = ""  # its story's key (pipeline.stories); "" counts the message as a story of its own
    text: str = ""  # the headline, kept only if it becomes one of a window's most negative
    news_source: str | None = None  # the input's `source` field

    @property
    def story_key(self) -> str:
        return self.story or f"id:{self.id}"

    def headline(self) -> Headline:
        return Headline(self.id, self.text, self.news_source, self.score, self.story_key, self.event_time_ms)

    def __post_init__(self) -> None:
        where = f"scored event id={self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise EventError(f"{where}: field 'id' must be a non-empty string")
        if not isinstance(self.topic, str) or not self.topic:
            raise EventError(f"{where}: field 'topic' must be a non-empty string, got {self.topic!r}")
        if self.sentiment not in SENTIMENTS:
            raise EventError(
                f"{where}: field 'sentiment' must be one of {SENTIMENTS}, got {self.sentiment!r}"
            )
        if (
            isinstance(self.score, bool)
            or not isinstance(self.score, (int, float))
            or not math.isfinite(self.score)
            or abs(self.score) > 1.0 + 1e-6
        ):
            raise EventError(f"{where}: field 'score' must be a finite number in [-1, 1], got {self.score!r}")
        if isinstance(self.event_time_ms, bool) or not isinstance(self.event_time_ms, int):
            raise EventError(
                f"{where}: field 'event_time_ms' must be an integer (epoch ms), got {self.event_time_ms!r}"
            )


_SPIKE_DEFAULTS = SpikeParams()


@dataclass(frozen=True)
class TrendSettings:
    """Window, lateness, dedup and spike-detector settings; README "Trends and spike detection" says why."""

    window_ms: int = 60_000
    allowed_lateness_ms: int = 30_000
    dedup_horizon_ms: int = 600_000
    emit_empty_windows: bool = True
    max_quiet_windows: int = 1_440
    # The daemon's watermark: how long (wall time) an input stream with no backlog left may stay
    # silent before it stops holding the watermark back (see pipeline.aggregator.Aggregator).
    source_idle_ms: int = 10_000
    # Spike detector (see pipeline.spikes); flat here so one env var or flag sets each, defaults
    # taken from SpikeParams so the two can never disagree.
    half_life_windows: float = _SPIKE_DEFAULTS.half_life_windows
    active_slowdown: float = _SPIKE_DEFAULTS.active_slowdown
    z_enter: float = _SPIKE_DEFAULTS.z_enter
    z_leave: float = _SPIKE_DEFAULTS.z_leave
    enter_windows: int = _SPIKE_DEFAULTS.enter_windows
    leave_windows: int = _SPIKE_DEFAULTS.leave_windows
    min_negatives: int = _SPIKE_DEFAULTS.min_negatives
    min_total: int = _SPIKE_DEFAULTS.min_total
    warmup_windows: int = _SPIKE_DEFAULTS.warmup_windows
    min_volume_std: float = _SPIKE_DEFAULTS.min_volume_std
    share_std_floor: float = _SPIKE_DEFAULTS.share_std_floor
    share_clamp: float = _SPIKE_DEFAULTS.share_clamp
    update_clip_z: float = _SPIKE_DEFAULTS.update_clip_z
    # Novelty: the detector counts stories (the first copy of each within story_horizon_ms; reprints
    # are messages, not news) unless count_by is "messages".
    count_by: str = "stories"
    story_horizon_ms: int = 3_600_000
    # A key that appears after its stream began (a ticker, or a topic no taxonomy listed) starts from
    # this prior instead of a warm-up: no negatives expected per window, this negative share.
    prior_negative_share: float = 0.25
    # Tickers (README "Per-company trends"): state for at most ticker_max_keys tickers (the least
    # recently active, not spiking, are evicted), Prometheus series for the ticker_metrics_top_k busiest
    # plus every ticker with an active spike.
    ticker_max_keys: int = 5_000
    ticker_metrics_top_k: int = 20

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "window_ms",
            "allowed_lateness_ms",
            "dedup_horizon_ms",
            "max_quiet_windows",
            "source_idle_ms",
            "story_horizon_ms",
            "ticker_max_keys",
            "ticker_metrics_top_k",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
        if problems:
            raise ConfigError("invalid trend settings: " + "; ".join(problems))
        if self.window_ms <= 0:
            problems.append(f"window_ms must be > 0, got {self.window_ms}")
        if self.allowed_lateness_ms < 0:
            problems.append(f"allowed_lateness_ms must be >= 0, got {self.allowed_lateness_ms}")
        if self.dedup_horizon_ms < self.window_ms + self.allowed_lateness_ms:
            problems.append(
                f"dedup_horizon_ms ({self.dedup_horizon_ms}) must be >= window_ms + allowed_lateness_ms "
                f"({self.window_ms + self.allowed_lateness_ms}), or a redelivery could be counted twice"
            )
        if self.source_idle_ms < 0:
            problems.append(f"source_idle_ms must be >= 0, got {self.source_idle_ms}")
        if self.max_quiet_windows < 1:
            problems.append(f"max_quiet_windows must be >= 1, got {self.max_quiet_windows}")
        if self.count_by not in COUNT_BY:
            problems.append(f"count_by must be one of {COUNT_BY}, got {self.count_by!r}")
        if self.story_horizon_ms < 0:
            problems.append(f"story_horizon_ms must be >= 0, got {self.story_horizon_ms}")
        if not 0 < self.prior_negative_share < 1:
            problems.append(f"prior_negative_share must be in (0, 1), got {self.prior_negative_share}")
        if self.ticker_max_keys < 1:
            problems.append(f"ticker_max_keys must be >= 1, got {self.ticker_max_keys}")
        if self.ticker_metrics_top_k < 0:
            problems.append(f"ticker_metrics_top_k must be >= 0, got {self.ticker_metrics_top_k}")
        if problems:
            raise ConfigError("invalid trend settings: " + "; ".join(problems))
        self.spike_params()  # validates the detector's fields (ConfigError)

    def spike_params(self) -> SpikeParams:
        names = {f.name for f in fields(SpikeParams)}
        return SpikeParams(**{n: getattr(self, n) for n in names})

    def prior(self) -> SpikeState:
        """The detector state a key appearing mid-stream starts from: warmed up, expecting no
        negatives per window (the count's noise floor, min_volume_std, still applies) and the
        prior share, weighted like a warm-up's worth of windows; both then follow what the key shows."""
        # As many share windows as warm-up windows: a weaker prior (one window) is dragged to the
        # surge's own share by its first, not yet qualifying, windows, and the surge never stands out.
        return SpikeState(
            windows=self.warmup_windows,
            share_windows=self.warmup_windows,
            share_mean=self.prior_negative_share,
        )

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "settings") -> TrendSettings:
        """Build from a plain mapping (config file section); unknown keys are a ConfigError naming `source`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown trend setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def iso_utc(ms: int) -> str:
    # Via records.iso_utc, which never raises: a window ending past 9999-12-31 must not stop the stage.
    text = records_iso_utc(ms)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass(frozen=True)
class TrendRecord:
    """One (key, window), emitted when the window closes; its JSON goes to news.trends (topics) or
    news.trends.tickers (tickers)."""

    topic: str  # the key: a topic name, or a ticker when key_type is "ticker"
    window_start_ms: int
    window_end_ms: int
    counts: dict[str, int]
    total: int
    mean_score: float  # 0.0 when total == 0
    negative_share: float  # 0.0 when total == 0
    late: int  # late events for this topic since its previous emitted record
    spike_score: float  # pipeline.spikes.combine(z_volume, z_share); 0.0 during warm-up
    spike_active: bool  # after guard, warm-up and hysteresis
    baseline_negative_share: float  # the baseline this window was judged against
    baseline_negatives: float  # EWMA negatives per window before this one
    z_volume: float
    z_share: float
    spike_transition: str | None  # "enter" | "leave" | None
    warmed_up: bool
    key_type: str = "topic"
    stories: int = 0  # stories first seen in this window
    negative_stories: int = 0
    headlines: tuple[Headline, ...] = ()  # this window's most negative new stories
    # While a spike is active (or building up): the most negative new stories of all its windows.
    spike_headlines: tuple[Headline, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key_type": self.key_type,
            "key": self.topic,
            self.key_type: self.topic,
            "window_start": iso_utc(self.window_start_ms),
            "window_end": iso_utc(self.window_end_ms),
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "counts": dict(self.counts),
            "total": self.total,
            "stories": self.stories,
            "negative_stories": self.negative_stories,
            "mean_score": round(self.mean_score, 6),
            "negative_share": round(self.negative_share, 6),
            "late": self.late,
            "spike_score": round(self.spike_score, 4),
            "spike_active": self.spike_active,
            "spike_transition": self.spike_transition,
            "baseline_negative_share": round(self.baseline_negative_share, 6),
            "baseline_negatives": round(self.baseline_negatives, 4),
            "z_volume": round(self.z_volume, 4),
            "z_share": round(self.z_share, 4),
            "warmed_up": self.warmed_up,
            "headlines": [h.to_json_dict() for h in self.headlines],
            "spike_headlines": [h.to_json_dict() for h in self.spike_headlines],
        }


@dataclass(frozen=True)
class TopicGauges:
    """What the daemon exports per topic, from the topic's last closed window."""

    negative_share: float
    volume: int
    baseline_negative_share: float
    spike_score: float
    spike_active: bool
    window_end_ms: int
    late_total: int
    recent_volume: float = 0.0  # EWMA of messages per window (ranks tickers for the metrics' top K)


@dataclass(frozen=True)
class TopicSnapshot:
    """What one topic needs to resume exactly after a restart: how far its windows were emitted, its
    late counters and its spike detector. Open windows are not in it: they are re-read from the input."""

    closed_before: int  # windows of the topic starting before this were emitted (or closed before it began)
    next_start: int  # its first window not yet emitted (beyond closed_before when it began after it)
    pending_late: int = 0
    late_total: int = 0
    spike: SpikeState = field(default_factory=SpikeState)
    spike_headlines: tuple[Headline, ...] = ()
