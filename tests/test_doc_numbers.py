"""The detector's numbers stated in prose agree with the code.

README's "Trends and spike detection" table must list every `TrendSettings` field with its default, and
the figures its text, docs/ and the Grafana dashboard repeat (thresholds, window counts, the way the
score is combined) must be the ones `SpikeParams`/`TrendSettings` and `pipeline.spikes.combine` use."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from devstack import monitoring as mon
from pipeline.spikes import SpikeParams, combine
from pipeline.trends import TrendSettings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DEFAULTS = TrendSettings()
P = SpikeParams()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def _number(text: str) -> float | bool | str:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[a-z_]+", text):  # a choice, e.g. count_by
        return text
    return float(re.sub(r"[\s\u202f\u2009]", "", text))  # "60 000" is 60000


def readme_detector_table() -> dict[str, float | bool | str]:
    """{setting: default} from the table of README's "Trends and spike detection" section."""
    out: dict[str, float | bool | str] = {}
    for line in _section(README, "Trends and spike detection").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", cells[0])
        values = [v for v in cells[1].split(",")]
        assert len(names) == len(values), f"README row {line!r}: {len(names)} names, {len(values)} values"
        for name, value in zip(names, values, strict=True):
            out[name] = _number(value)
    return out


def test_readme_detector_table_lists_every_setting_with_its_default() -> None:
    table = readme_detector_table()
    for f in fields(TrendSettings):
        assert f.name in table, f"README's detector table has no row for TrendSettings.{f.name}"
        assert table[f.name] == getattr(DEFAULTS, f.name), (
            f"README says {f.name} = {table[f.name]}, TrendSettings says {getattr(DEFAULTS, f.name)}"
        )
    assert set(table) <= {f.name for f in fields(TrendSettings)}, set(table) - {
        f.name for f in fields(TrendSettings)
    }


# (regex over README + docs/*.md, the setting each captured figure must equal)
PROSE_FIGURES = [
    (r"(?:score|scoring) ≥ (\d+(?:\.\d+)?)\b(?! negative)", "z_enter"),
    (r"entry threshold is (\d+(?:\.\d+)?)", "z_enter"),
    (r"scoring < (\d+(?:\.\d+)?)", "z_leave"),
    (r"enter after (\d+) windows", "enter_windows"),
    (r"leave after (\d+) consecutive windows", "leave_windows"),
    (r"needs ≥ (\d+) negative messages", "min_negatives"),
    (r"no spike before (\d+) windows", "warmup_windows"),
    (r"baseline \+ (\d+(?:\.\d+)?)σ", "update_clip_z"),
    (r"passes its end \+ (\d+) s\b", "allowed_lateness_s"),
    (r"seen within (\d+) min of event time", "dedup_horizon_min"),
]


def _expected(name: str) -> float:
    if name == "allowed_lateness_s":
        return DEFAULTS.allowed_lateness_ms / 1000
    if name == "dedup_horizon_min":
        return DEFAULTS.dedup_horizon_ms / 60_000
    return float(getattr(DEFAULTS, name))


def _prose() -> list[tuple[str, str]]:
    docs = [("README.md", README)]
    docs += [(f"docs/{p.name}", p.read_text(encoding="utf-8")) for p in sorted((REPO / "docs").glob("*.md"))]
    return docs


@pytest.mark.parametrize(("pattern", "setting"), PROSE_FIGURES, ids=[s for _, s in PROSE_FIGURES])
def test_detector_figures_in_prose_match_the_defaults(pattern: str, setting: str) -> None:
    found = [
        (where, m.group(0), float(m.group(1))) for where, text in _prose() for m in re.finditer(pattern, text)
    ]
    assert found, f"no sentence matches {pattern!r} any more: update PROSE_FIGURES with the prose"
    wrong = [(where, phrase) for where, phrase, value in found if value != _expected(setting)]
    assert not wrong, f"{setting} is {_expected(setting):g} in the code; the prose says: {wrong}"


def test_the_score_is_the_harmonic_mean_everywhere_it_is_named() -> None:
    assert combine(2.0, 6.0) == pytest.approx(3.0)  # harmonic: 2*2*6/(2+6); geometric would be 3.46
    assert combine(-1.0, 4.0) == -1.0  # not both positive: the smaller
    dashboard = mon.DASHBOARD.read_text(encoding="utf-8")
    spikes_doc = (REPO / "pipeline" / "spikes.py").read_text(encoding="utf-8")
    rules = [
        (f"deploy/prometheus/rules/{p.name}", p.read_text(encoding="utf-8"))
        for p in mon.RULES_DIR.glob("*.yml")
    ]
    texts = [*_prose(), ("dashboard", dashboard), ("pipeline/spikes.py", spikes_doc), *rules]
    for where, text in texts:
        for wrong in ("geometric mean", "sqrt(z_volume * z_share)", "min of the volume and share"):
            assert wrong not in text, (
                f"{where} calls the spike score {wrong!r}; the code takes the harmonic mean"
            )
    for where, text in (("README.md", README), ("dashboard", dashboard), ("pipeline/spikes.py", spikes_doc)):
        assert "harmonic mean" in text, where


def test_dashboard_spike_thresholds_and_text_come_from_spike_params() -> None:
    dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p["title"] == "Spike score")
    steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, P.z_leave, P.z_enter]
    assert f"{P.z_enter:.1f} or more" in panel["description"]
    assert f"after {P.enter_windows} windows" in panel["description"]
    numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", panel["description"])}
    assert numbers <= {P.z_enter, P.z_leave, P.enter_windows, P.leave_windows, P.min_negatives}, numbers
