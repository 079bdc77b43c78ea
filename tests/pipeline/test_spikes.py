"""The per-topic spike detector as a pure step function over (negatives, total) per closed window.

Scenarios are built from explicit per-window counts (deterministic, or from a seeded generator shaped
like the calm background the brief describes: 0-3 messages a minute per topic, about a third negative).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import ConfigError
from pipeline.spikes import SpikeDecision, SpikeParams, SpikeState, combine, step
from pipeline.windows import WindowAgg, agg_result

PARAMS = SpikeParams()


def run(windows: list[tuple[int, int]], params: SpikeParams = PARAMS) -> list[SpikeDecision]:
    """Step a fresh detector over (negatives, total) per window; returns one decision per window."""
    state, out = SpikeState(), []
    for negatives, total in windows:
        state, decision = step(state, agg_result(WindowAgg(negatives, total - negatives, 0)), params)
        out.append(decision)
    return out


def calm(rng: random.Random, n: int, share: float = 0.33) -> list[tuple[int, int]]:
    """A calm background: 0-3 messages a minute, each negative with probability `share`."""
    out = []
    for _ in range(n):
        total = rng.randint(0, 3)
        out.append((sum(rng.random() < share for _ in range(total)), total))
    return out


def transitions(decisions: list[SpikeDecision]) -> list[tuple[int, str]]:
    return [(i, d.transition) for i, d in enumerate(decisions) if d.transition]


def test_one_angry_headline_in_a_quiet_topic_is_not_a_spike() -> None:
    windows = [(0, 0)] * 60 + [(1, 1)] + [(0, 0)] * 10
    decisions = run(windows)
    assert not any(d.active for d in decisions)
    assert decisions[60].score < PARAMS.z_enter
    # Even a single window with several negatives is not "sustained".
    burst = calm(random.Random(3), 60) + [(6, 7)] + calm(random.Random(4), 10)
    assert not any(d.active for d in run(burst))


@pytest.mark.parametrize("seed", range(5))
def test_sustained_surge_is_a_spike_and_ends_after_it(seed: int) -> None:
    rng = random.Random(seed)
    windows = calm(rng, 90)
    surge = [(neg + 6, total + 6) for neg, total in calm(rng, 12)]  # >= 6 extra negatives a minute
    windows += surge + calm(rng, 30)
    decisions = run(windows)
    moves = transitions(decisions)
    assert [m for _, m in moves] == ["enter", "leave"], moves
    enter_at, leave_at = moves[0][0], moves[1][0]
    assert 90 + PARAMS.enter_windows - 1 <= enter_at <= 90 + 5  # detected within a few minutes
    assert all(d.active for d in decisions[enter_at:102])  # no flapping during the surge
    # Over soon after it stops (calm windows must be consecutive, so background noise can add a few).
    assert 102 + PARAMS.leave_windows - 1 <= leave_at <= 102 + 10


def test_slow_drift_of_the_share_over_hours_is_not_a_spike() -> None:
    rng = random.Random(7)
    windows = []
    for i in range(8 * 60):  # 8 hours at 20 messages a minute; share 0.10 -> 0.60 over the first 6
        share = 0.10 + 0.50 * min(i / 360, 1.0)
        windows.append((sum(rng.random() < share for _ in range(20)), 20))
    decisions = run(windows)
    assert not any(d.active for d in decisions)
    # The baseline followed the drift instead of flagging it.
    assert decisions[-1].baseline_negative_share == pytest.approx(0.60, abs=0.05)


def test_busy_but_balanced_day_is_not_a_spike() -> None:
    rng = random.Random(11)
    windows = calm(rng, 60)
    for _ in range(60):  # volume x5, share unchanged
        total = rng.randint(8, 14)
        windows.append((sum(rng.random() < 0.33 for _ in range(total)), total))
    assert not any(d.active for d in run(windows))


def test_a_calm_day_across_many_topics_raises_nothing() -> None:
    rng = random.Random(2026)
    for _topic in range(10):
        assert not any(d.active for d in run(calm(rng, 24 * 60)))


def test_hysteresis_keeps_a_spike_active_between_the_thresholds() -> None:
    background = [(1, 3), (0, 2), (1, 2), (0, 1), (0, 0), (1, 3)] * 10
    hovering = [(4, 6), (6, 8)] * 10  # scores alternate around z_enter
    windows = background + [(8, 9)] * 5 + hovering + [(0, 2)] * 10
    decisions = run(windows)
    hover = decisions[65:85]
    # Precondition: without hysteresis this would flap (some windows below z_enter, none below z_leave).
    assert any(d.score < PARAMS.z_enter for d in hover)
    assert all(d.score >= PARAMS.z_leave for d in hover)
    moves = transitions(decisions)
    assert [m for _, m in moves] == ["enter", "leave"]
    assert moves[1][0] == 85 + PARAMS.leave_windows - 1


def test_hysteresis_on_entry_a_lukewarm_window_does_not_reset_the_count() -> None:
    background = [(1, 3), (0, 2), (1, 2), (0, 1), (0, 0), (1, 3)] * 10
    params = replace(PARAMS, enter_windows=2)
    # qualifying, lukewarm (between the thresholds), qualifying -> enters on the second qualifying one.
    decisions = run(background + [(8, 9), (4, 6), (8, 9)], params)
    assert params.z_leave <= decisions[61].score < params.z_enter
    assert [i for i, m in transitions(decisions)] == [62]
    # ... but a calm window in between does reset it.
    decisions = run(background + [(8, 9), (0, 2), (8, 9)], params)
    assert transitions(decisions) == []


def test_warm_up_no_spike_before_enough_history() -> None:
    windows = [(9, 10)] * 10 + [(0, 1)] * 30
    decisions = run(windows)
    assert not any(d.active for d in decisions)
    assert all(d.score == 0.0 and not d.warmed_up for d in decisions[: PARAMS.warmup_windows])
    assert decisions[PARAMS.warmup_windows].warmed_up


def test_quiet_windows_count_a_usually_silent_topic_is_judged_against_silence() -> None:
    surge = [(6, 8)] * 6
    silent = run(([(0, 0)] * 9 + [(1, 3)]) * 6 + surge)  # a message every few minutes, a third negative
    busy_and_gloomy = run([(6, 9), (5, 8), (7, 9)] * 20 + surge)
    assert any(d.active for d in silent)
    assert not any(d.active for d in busy_and_gloomy)


def test_baseline_is_not_polluted_while_a_spike_is_active() -> None:
    rng = random.Random(5)
    windows = calm(rng, 90) + [(8, 9)] * 30
    decisions = run(windows)
    assert decisions[-1].active
    before = decisions[90]
    assert decisions[-1].baseline_negatives - before.baseline_negatives < 0.5
    assert decisions[-1].baseline_negative_share - before.baseline_negative_share < 0.05


def test_a_permanent_shift_eventually_stops_being_a_spike() -> None:
    windows = [(1, 3), (0, 2), (1, 2), (0, 1), (0, 0), (1, 3)] * 10 + [(8, 9)] * (24 * 60)
    moves = transitions(run(windows))
    assert [m for _, m in moves] == ["enter", "leave"]
    assert moves[1][0] - moves[0][0] > 60  # slowed, so it lasts hours, not minutes


def test_volume_guard_needs_enough_negatives() -> None:
    background = [(0, 0)] * 60
    decisions = run(background + [(4, 4)] * 10)
    assert not any(d.active for d in decisions)
    assert all(not d.volume_ok for d in decisions[60:])


def test_combine_needs_both_signals() -> None:
    assert combine(20.0, 1.0) < 2.0  # a busy but balanced window
    assert combine(1.0, 20.0) < 2.0  # one headline in a quiet topic
    assert combine(6.0, 3.0) == pytest.approx(4.0)
    assert combine(-1.0, 5.0) == -1.0


@given(st.floats(0.01, 50), st.floats(0.01, 50))
def test_combined_score_lies_between_the_weaker_signal_and_twice_it(zv: float, zs: float) -> None:
    score = combine(zv, zs)
    assert min(zv, zs) - 1e-9 <= score <= 2 * min(zv, zs) + 1e-9


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=80))
def test_step_is_pure_and_deterministic(raw: list[tuple[int, int]]) -> None:
    windows = [(min(a, b), max(a, b)) for a, b in raw]
    first, second = run(windows), run(windows)
    assert first == second
    # The state is frozen: stepping does not change the state passed in.
    state = SpikeState()
    step(state, agg_result(WindowAgg(3, 1, 1)), PARAMS)
    assert state == SpikeState()
    # Active only after warm-up, and transitions alternate enter/leave.
    assert not any(d.active for d in first[: PARAMS.warmup_windows])
    moves = [m for _, m in transitions(first)]
    assert moves == ["enter", "leave"] * (len(moves) // 2) + ["enter"] * (len(moves) % 2)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"z_leave": 5.0}, "z_leave"),
        ({"half_life_windows": 0}, "half_life_windows"),
        ({"enter_windows": 0}, "enter_windows"),
        ({"active_slowdown": 1.5}, "active_slowdown"),
        ({"share_clamp": 0.7}, "share_clamp"),
    ],
)
def test_invalid_params_are_config_errors(change: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        replace(PARAMS, **change)


def test_false_alarm_and_detection_rates_on_seeded_traffic() -> None:
    """The numbers the README quotes: calm topic-days raise nothing, a +6/min surge is caught."""
    rng = random.Random(42)
    false_enters = 0
    for volume in ("0-3", "0-6", "bursty-3", "bursty-8", "busy-10-30"):
        for share in (0.2, 0.35, 0.5):
            for _rep in range(2):
                windows = []
                for _ in range(24 * 60):
                    if volume.startswith("bursty"):
                        total = int(rng.expovariate(1 / int(volume.split("-")[1])))
                    else:
                        lo, hi = (int(x) for x in volume.split("-")[-2:])
                        total = rng.randint(lo, hi)
                    windows.append((sum(rng.random() < share for _ in range(total)), total))
                false_enters += sum(d.transition == "enter" for d in run(windows))
    assert false_enters == 0  # 30 topic-days
    caught, delays = 0, []
    for _ in range(50):
        windows = calm(rng, 60) + [(n + 6, t + 6) for n, t in calm(rng, 12)] + calm(rng, 20)
        enters = [i for i, m in transitions(run(windows)) if m == "enter"]
        if enters:
            caught += 1
            delays.append(enters[0] - 60)
    assert caught >= 49
    assert max(delays) <= 5
