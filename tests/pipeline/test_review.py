"""The review queue: candidates, story de-duplication and the rate bound (pure, injected clock), then
the daemon filling news.review on a real broker, `finsent review export` (each record once) and
`finsent review merge`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from models.runtime import Prediction
from pipeline.records import NewsItem, Origin
from pipeline.review import RecentStories, ReviewSampler, low_confidence, story_key
from pipeline.review_cli import GUESS_COLUMNS, LABEL_COLUMNS, export_rows
from pipeline.scoring import score_batch
from tests.support.broker import Broker, read_topic, values
from tests.support.daemon_procs import finsent, start_consume, write_feed
from tests.support.toy_artifact import good_rows, toy_version


class _Fixed:
    version = "v1"

    def __init__(self, preds: list[Prediction]) -> None:
        self.preds = preds

    def score(self, texts: list[str]) -> list[Prediction]:
        return self.preds[: len(texts)]


def _pred(topic_conf: float, sent_conf: float, topic: str = "Oil", sentiment: str = "negative") -> Prediction:
    rest = (1 - sent_conf) / 2
    probs = {"negative": rest, "neutral": rest, "positive": rest}
    probs[sentiment] = sent_conf
    return Prediction(topic, topic_conf, sentiment, probs, probs["positive"] - probs["negative"])


def _scored(texts: list[str], preds: list[Prediction]) -> list:
    items = [NewsItem(f"id{i}", t, 0, None, None, (), Origin("news.raw", 0, i)) for i, t in enumerate(texts)]
    return score_batch(items, _Fixed(preds), now_ms=0)[0]


def test_story_key_folds_case_punctuation_and_spacing_only() -> None:
    assert story_key("Oil falls 3% on OPEC news") == story_key("  oil FALLS 3 % on opec-news!")
    assert story_key("Oil falls 3% on OPEC news") != story_key("Oil falls 4% on OPEC news")


def test_a_wire_update_of_a_headline_is_the_same_review_job() -> None:
    sampler = ReviewSampler("news.review", min_confidence=0.5, per_s=100, clock=lambda: 0.0)
    texts = [
        "Halvorsen Foods profit beats estimates",
        "UPDATE 2-Halvorsen Foods profit beats estimates; raises outlook",
        "RT @desk: Halvorsen Foods profit beats estimates https://t.co/x",
    ]
    out = sampler.low_confidence(_scored(texts, [_pred(0.3, 0.9)] * 3))
    assert [json.loads(o.value)["text"] for o in out] == texts[:1]
    assert json.loads(out[0].value)["story"] == story_key(texts[0])


def test_low_confidence_names_the_unsure_heads() -> None:
    (sure, unsure_topic, unsure_both) = _scored(
        ["a", "b", "c"], [_pred(0.9, 0.9), _pred(0.4, 0.9), _pred(0.3, 0.45)]
    )
    assert low_confidence(sure, 0.5) == []
    assert low_confidence(unsure_topic, 0.5) == ["topic"]
    assert low_confidence(unsure_both, 0.5) == ["topic", "sentiment"]


def test_recent_stories_forget_the_oldest_beyond_capacity() -> None:
    mem = RecentStories(2)
    assert mem.add("a") and mem.add("b") and not mem.add("a")
    assert mem.add("c")  # evicts b (a was touched more recently)
    assert "b" not in mem and "a" in mem and mem.add("b")


def test_sampler_is_bounded_in_rate_and_sends_a_story_once() -> None:
    now = [0.0]
    sampler = ReviewSampler("news.review", min_confidence=0.5, per_s=2, clock=lambda: now[0])
    texts = ["Oil falls", "OIL FALLS!", "Gold rises", "Rates hold", "Jobs beat", "Sure thing"]
    preds = [_pred(0.3, 0.9)] * 5 + [_pred(0.9, 0.9)]
    out = sampler.low_confidence(_scored(texts, preds))
    # the burst is 2: "Oil falls" and "Gold rises"; its duplicate costs no token; the sure one is not a candidate
    assert [json.loads(o.value)["text"] for o in out] == ["Oil falls", "Gold rises"]
    rec = json.loads(out[0].value)
    assert (
        rec["reason"] == "low_confidence"
        and rec["heads"] == ["topic"]
        and out[0].key == rec["story"].encode()
    )
    now[0] = 1.0  # two more tokens
    out = sampler.low_confidence(_scored(texts, preds))
    assert [json.loads(o.value)["text"] for o in out] == ["Rates hold", "Jobs beat"]
    now[0] = 100.0
    assert sampler.low_confidence(_scored(texts, preds)) == []  # every story already sent
    shadow = sampler.disagreements(
        [(_scored(["New story"], [_pred(0.9, 0.9)])[0], _pred(0.9, 0.9, "Macro"))], "v2"
    )
    rec = json.loads(shadow[0].value)
    assert rec["reason"] == "shadow_disagreement" and rec["heads"] == ["topic"]
    assert rec["shadow"] == {"model_version": "v2", "topic": "Macro", "sentiment": "negative"}


def test_export_rows_keep_one_row_per_story_with_blank_label_columns() -> None:
    recs = [
        {
            "story": "s1",
            "text": "Oil falls",
            "topic": "Oil",
            "topic_confidence": 0.3,
            "reason": "low_confidence",
        },
        {"story": "s2", "text": "Gold rises", "topic": "Metals", "heads": ["topic", "sentiment"]},
        {"story": "s1", "text": "OIL FALLS", "topic": "Macro", "topic_confidence": 0.2},
    ]
    rows = export_rows(recs)
    assert [r["text"] for r in rows] == ["OIL FALLS", "Gold rises"]  # the newest record of s1
    assert all(r["topic"] == "" and r["sentiment"] == "" for r in rows)
    assert rows[0]["model_topic"] == "Macro" and rows[1]["heads"] == "topic,sentiment"


@pytest.mark.integration
def test_daemon_fills_the_review_topic_and_export_then_merge_close_the_loop(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    model = toy_version(tmp_path, "v1")
    rows = good_rows(60)
    dupes = [{**r, "id": f"dup{i}", "headline": r["headline"].upper() + "!"} for i, r in enumerate(rows[:10])]
    feed = write_feed(tmp_path / "feed.jsonl", rows + dupes)
    assert finsent("replay", str(feed), "--bootstrap-servers", bs).returncode == 0
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(model), "--provider", "cpu", "--metrics-port", "0",
        "--review-min-confidence", "1.0", "--review-per-s", "1000", "--exit-when-idle", "4",
    )  # fmt: skip
    try:
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stories = {story_key(r["headline"]) for r in rows}
    review = values(read_topic(bs, "news.review", done=lambda r: len(r) >= len(stories)))
    # every message is unsure below a confidence of 1.0; each story once, the shouted duplicates not again
    assert sorted(r["story"] for r in review) == sorted(stories)
    scored = {r["id"]: r for r in values(read_topic(bs, "news.scored", done=lambda r: len(r) >= 70))}
    assert len(scored) == 70
    for r in review:
        assert (r["topic"], r["model_version"]) == (scored[r["id"]]["topic"], "v1")

    out = tmp_path / "to_label.csv"
    first = finsent("review", "export", "--bootstrap-servers", bs, "--out", str(out))
    assert first.returncode == 0, first.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert len(exported) == len(stories) and list(exported[0]) == [*LABEL_COLUMNS, *GUESS_COLUMNS]
    again = finsent("review", "export", "--bootstrap-servers", bs, "--out", str(tmp_path / "again.csv"))
    assert again.returncode == 0 and "exported 0 stories" in again.stderr  # each record exported once

    for i, row in enumerate(exported):  # a person labels some rows, one head or both, skips the rest
        row["topic"] = row["model_topic"] if i % 3 != 2 else ""
        row["sentiment"] = "neutral" if i % 3 == 0 else ""
    labelled = tmp_path / "labelled.csv"
    with open(labelled, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(exported[0]))
        w.writeheader()
        w.writerows(exported)
    base = tmp_path / "train.csv"
    base.write_text("text,topic,sentiment\noil falls,Energy | Oil,negative\n")
    merged = tmp_path / "merged.csv"
    res = finsent("review", "merge", str(base), str(labelled), "--out", str(merged))
    assert res.returncode == 0, res.stderr
    with open(merged, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    want = [r for i, r in enumerate(exported) if i % 3 != 2]
    assert len(got) == 1 + len(want)
    assert [(g["text"], g["topic"], g["sentiment"]) for g in got[1:]] == [
        (r["text"], r["topic"], r["sentiment"]) for r in want
    ]
