"""Per-topic negative-spike detection over closed windows — a pure step function, no I/O, no clock.

    state, decision = step(state, window_stats, params)

`SpikeState` is the whole memory of one topic's detector (a frozen dataclass of numbers, so it can be
serialised); `step` judges one closed window against the baseline built from the windows before it,
then folds the window into the baseline.

What is judged (see README "Trends and spike detection" for the why of each default):

- Baseline: exponentially weighted mean and variance of the window's negative count, and an EWMA of the
  window's negative share. Quiet windows (total 0) are stepped for the count, so a topic that is usually
  silent has a count baseline near zero and is judged against that; they carry no share information, so
  the share EWMA skips them. The share EWMA weighs windows equally rather than by volume: a volume-weighted
  share lets the first few (not yet qualifying) surge windows drag the baseline up within minutes.
- z_volume = (negatives - mean) / std, where std is at least sqrt(mean) (a count is at least as noisy as
  a Poisson count) and at least `min_volume_std` (so a near-zero baseline cannot make one headline huge).
- z_share = (share - p0) / sqrt(p0 (1 - p0) / total + share_std_floor^2): the share against the binomial
  noise expected at this window's volume, so a window of three messages cannot produce a big share z.
- spike_score = the harmonic mean 2 z_volume z_share / (z_volume + z_share) when both are positive, else
  min(z_volume, z_share) (`combine`): it lies between the smaller z and twice it, so *both* the number
  of negatives and their share must be unusual, and a strong one partly makes up for a moderate one (at
  5-10 messages a minute binomial noise caps z_share near 3 even for an all-negative window, so a plain
  min would never fire on the surges we care about). A busy but balanced news day raises z_volume
  alone; one angry headline in a quiet topic raises z_share alone; neither scores high. The score is 0.0
  until the topic is warmed up (no baseline to judge by). Alerts key on `spike_active`; the score is for
  ranking and dashboards.
- Entry: score >= z_enter with at least `min_negatives` negatives and `min_total` messages, for
  `enter_windows` windows with none scoring below z_leave between them, after `warmup_windows` windows
  of history.
- Exit (hysteresis): `leave_windows` consecutive windows with score < z_leave.
- While a spike is active (or a window qualifies for one) the baseline moves at `active_slowdown` times
  its normal rate, so the surge does not become its own baseline; slowed rather than frozen so that a
  permanent shift in a topic's tone eventually stops being a spike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.errors import ConfigError
from pipeline.windows import WindowStats


@dataclass(frozen=True)
class SpikeParams:
    half_life_windows: float = 30.0
    active_slowdown: float = 0.1
    z_enter: float = 3.0
    z_leave: float = 1.5
    enter_windows: int = 3
    leave_windows: int = 3
    min_negatives: int = 5
    min_total: int = 5
    warmup_windows: int = 15
    min_volume_std: float = 1.0
    share_std_floor: float = 0.05
    share_clamp: float = 0.02
    update_clip_z: float = 3.0

    def __post_init__(self) -> None:
        problems = []
        if not self.half_life_windows > 0:
            problems.append(f"half_life_windows must be > 0, got {self.half_life_windows}")
        if not 0 <= self.active_slowdown <= 1:
            problems.append(f"active_slowdown must be in [0, 1], got {self.active_slowdown}")
        if not self.z_leave < self.z_enter:
            problems.append(f"z_leave ({self.z_leave}) must be below z_enter ({self.z_enter}) for hysteresis")
        for name in ("enter_windows", "leave_windows"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("min_negatives", "min_total", "warmup_windows"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.min_volume_std > 0:
            problems.append(f"min_volume_std must be > 0, got {self.min_volume_std}")
        if not self.share_std_floor >= 0:
            problems.append(f"share_std_floor must be >= 0, got {self.share_std_floor}")
        if not self.update_clip_z > 0:
            problems.append(f"update_clip_z must be > 0, got {self.update_clip_z}")
        if not 0 < self.share_clamp < 0.5:
            problems.append(f"share_clamp must be in (0, 0.5), got {self.share_clamp}")
        if problems:
            raise ConfigError("invalid spike settings: " + "; ".join(problems))

    @property
    def alpha(self) -> float:
        """EWMA weight of the newest window, from the half-life in windows."""
        return 1.0 - 0.5 ** (1.0 / self.half_life_windows)


@dataclass(frozen=True)
class SpikeState:
    windows: int = 0  # windows folded into the baseline so far (quiet ones included)
    neg_mean: float = 0.0
    neg_var: float = 0.0
    share_windows: int = 0  # non-empty windows folded into the share baseline
    share_mean: float = 0.0
    active: bool = False
    enter_streak: int = 0  # qualifying windows while inactive, since the last calm one
    calm_streak: int = 0  # consecutive windows below z_leave while active


@dataclass(frozen=True)
class SpikeDecision:
    score: float
    z_volume: float
    z_share: float
    active: bool
    transition: str | None  # "enter" | "leave" | None
    warmed_up: bool
    volume_ok: bool
    baseline_negative_share: float  # the baseline this window was judged against
    baseline_negatives: float


def baseline_share(state: SpikeState) -> float:
    return state.share_mean


def _volume_std(state: SpikeState, params: SpikeParams) -> float:
    return max(math.sqrt(max(state.neg_var, state.neg_mean)), params.min_volume_std)


def _share_null(state: SpikeState, total: int, params: SpikeParams) -> tuple[float, float]:
    """(p0, std): the baseline share, clamped off 0 and 1, and the share's expected noise at `total`."""
    p0 = min(max(baseline_share(state), params.share_clamp), 1.0 - params.share_clamp)
    return p0, math.sqrt(p0 * (1.0 - p0) / total + params.share_std_floor**2)


def z_scores(state: SpikeState, negatives: int, total: int, params: SpikeParams) -> tuple[float, float]:
    """(z_volume, z_share) of one window against `state`'s baseline."""
    z_volume = (negatives - state.neg_mean) / _volume_std(state, params)
    if total == 0:
        return z_volume, 0.0
    p0, std = _share_null(state, total, params)
    return z_volume, (negatives / total - p0) / std


def combine(z_volume: float, z_share: float) -> float:
    """The exported spike score: harmonic mean when both z are positive, else the smaller one.

    The harmonic mean lies between min(z) and 2 * min(z), so a high score needs *both* signals, while a
    strong volume signal still lifts a share signal that binomial noise keeps near 3 at low volumes.
    """
    if z_volume > 0 and z_share > 0:
        return 2.0 * z_volume * z_share / (z_volume + z_share)
    return min(z_volume, z_share)


def _update(
    state: SpikeState, negatives: int, total: int, params: SpikeParams, slowdown: float
) -> tuple[float, float, int, float]:
    """The baseline after folding in one window: (neg_mean, neg_var, share_windows, share_mean)."""
    # Incremental exponentially weighted mean and variance (one pass, no history kept). The first windows
    # use the running mean (weight 1/n) so the baseline is not biased towards its zero start. Values above
    # mean + update_clip_z * std are clipped before they are folded in (a robust EWMA): the first windows
    # of a surge, before it qualifies, would otherwise inflate the variance and hide the rest of it.
    alpha = max(params.alpha, 1.0 / (state.windows + 1)) * slowdown
    warm = state.windows >= 1
    x = float(negatives)
    if warm:
        x = min(x, state.neg_mean + params.update_clip_z * _volume_std(state, params))
    diff = x - state.neg_mean
    neg_mean = state.neg_mean + alpha * diff
    neg_var = (1.0 - alpha) * (state.neg_var + alpha * diff * diff)
    share_windows, share_mean = state.share_windows, state.share_mean
    if total > 0:
        share = negatives / total
        if share_windows >= 1:
            p0, std = _share_null(state, total, params)
            share = min(share, p0 + params.update_clip_z * std)
        share_alpha = max(params.alpha, 1.0 / (share_windows + 1)) * slowdown
        share_mean += share_alpha * (share - share_mean)
        share_windows += 1
    return neg_mean, neg_var, share_windows, share_mean


def step(state: SpikeState, stats: WindowStats, params: SpikeParams) -> tuple[SpikeState, SpikeDecision]:
    """Judge one closed window, then fold it into the baseline. Pure: returns the new state."""
    negatives, total = stats.negatives, stats.total
    warmed_up = state.windows >= params.warmup_windows
    volume_ok = negatives >= params.min_negatives and total >= params.min_total
    if warmed_up:
        z_volume, z_share = z_scores(state, negatives, total, params)
        score = combine(z_volume, z_share)
    else:
        z_volume = z_share = score = 0.0
    qualifies = warmed_up and volume_ok and score >= params.z_enter

    active, transition = state.active, None
    enter_streak, calm_streak = state.enter_streak, state.calm_streak
    if not active:
        # Hysteresis on the way in too: a window between z_leave and z_enter neither counts nor resets.
        if qualifies:
            enter_streak += 1
        elif score < params.z_leave:
            enter_streak = 0
        if enter_streak >= params.enter_windows:
            active, transition, calm_streak = True, "enter", 0
    else:
        calm_streak = calm_streak + 1 if score < params.z_leave else 0
        if calm_streak >= params.leave_windows:
            active, transition, enter_streak = False, "leave", 0

    # Suspicious windows (score >= z_leave) move the baseline slowly too, not just active ones: the first
    # windows of a surge must not become the baseline it is judged against before it qualifies.
    slowdown = params.active_slowdown if (active or (warmed_up and score >= params.z_leave)) else 1.0
    neg_mean, neg_var, share_windows, share_mean = _update(state, negatives, total, params, slowdown)
    new_state = SpikeState(
        windows=state.windows + 1,
        neg_mean=neg_mean,
        neg_var=neg_var,
        share_windows=share_windows,
        share_mean=share_mean,
        active=active,
        enter_streak=enter_streak,
        calm_streak=calm_streak,
    )
    decision = SpikeDecision(
        score=score,
        z_volume=z_volume,
        z_share=z_share,
        active=active,
        transition=transition,
        warmed_up=warmed_up,
        volume_ok=volume_ok,
        baseline_negative_share=baseline_share(state),
        baseline_negatives=state.neg_mean,
    )
    return new_state, decision
