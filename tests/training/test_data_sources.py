"""Several sources per run, `datasets` directories, hub ids and label maps (training/data.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from models.errors import DataError
from pipeline.cli import finsent_argv, main
from training.data import MISSING, Columns, load_dataset, parse_source

datasets = pytest.importorskip("datasets")

TOPICS = ("Earnings", "Dividend", "IPO")
REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def saved_sentiment_set(root: Path) -> Path:
    """A sentiment-only set as the hub stores it: integer ids with ClassLabel names in its own order."""
    features = datasets.Features(
        {
            "tweet": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["bearish", "bullish", "neutral"]),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"tweet": ["Acme sinks", "Acme soars", "Acme flat", "Beta drops"], "label": [0, 1, 2, 0]},
        features=features,
    )
    path = root / "sentiment_ds"
    ds.save_to_disk(str(path))
    return path


def test_save_to_disk_directory_uses_classlabel_names_and_a_label_map(tmp_path: Path) -> None:
    path = saved_sentiment_set(tmp_path)
    # ClassLabel names are bearish/bullish/neutral, not our label names: without a map they are
    # unknown labels, and the error names the source and the row
    with pytest.raises(DataError, match=r"sentiment_ds: row 1: unknown sentiment label 'bearish'"):
        load_dataset(f"{path}#text=tweet#sentiment=label#topic=-", topics=TOPICS)
    label_map = write(
        tmp_path / "map.json", json.dumps({"sentiment": {"0": "negative", "1": "positive", "2": "neutral"}})
    )
    data = load_dataset(f"{path}#text=tweet#sentiment=label#topic=-", topics=TOPICS, label_map=label_map)
    assert data.texts == ("Acme sinks", "Acme soars", "Acme flat", "Beta drops")
    assert data.sentiments.tolist() == [0, 2, 1, 0]  # negative, positive, neutral in our order
    assert data.topics.tolist() == [MISSING] * 4


def test_classlabel_names_are_used_when_they_match(tmp_path: Path) -> None:
    features = datasets.Features(
        {"text": datasets.Value("string"), "topic": datasets.ClassLabel(names=["IPO", "Earnings"])}
    )
    path = tmp_path / "topics_ds"
    datasets.Dataset.from_dict({"text": ["a", "b"], "topic": [1, 0]}, features=features).save_to_disk(
        str(path)
    )
    data = load_dataset(f"{path}#sentiment=-", topics=TOPICS)
    assert [TOPICS[i] for i in data.topics] == ["Earnings", "IPO"]


def test_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    part = {"text": ["Acme beats"], "topic": ["Earnings"], "sentiment": ["positive"]}
    path = tmp_path / "dict_ds"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(part), "validation": datasets.Dataset.from_dict(part)}
    ).save_to_disk(str(path))
    with pytest.raises(DataError, match=r"splits \['train', 'validation'\]: add #split=NAME"):
        load_dataset(path, topics=TOPICS)
    with pytest.raises(DataError, match="no split 'test'"):
        load_dataset(f"{path}#split=test", topics=TOPICS)
    assert len(load_dataset(f"{path}#split=validation", topics=TOPICS)) == 1


def test_sources_concatenate_with_their_own_columns(tmp_path: Path) -> None:
    topics_csv = write(
        tmp_path / "topics.csv", "headline,category\nAcme lifts payout,Dividend\nBeta IPO,IPO\n"
    )
    sentiment = saved_sentiment_set(tmp_path)
    label_map = write(tmp_path / "map.json", json.dumps({"sentiment": ["negative", "positive", "neutral"]}))
    specs = [
        f"{topics_csv}#text=headline#topic=category#sentiment=-",
        f"{sentiment}#text=tweet#sentiment=label#topic=-",
    ]
    data = load_dataset(specs, topics=None, label_map=label_map)
    assert len(data) == 6
    assert data.topic_labels == ("Dividend", "IPO")  # topics=None: the union the sources hold, sorted
    assert data.topics.tolist() == [0, 1] + [MISSING] * 4  # partial labels stay partial
    assert data.sentiments.tolist() == [MISSING, MISSING, 0, 2, 1, 0]
    assert data.rows.tolist() == [1, 2, 1, 2, 3, 4]  # row numbers within each source
    # a comma-separated list is the same as several --data values
    assert load_dataset(",".join(specs), topics=None, label_map=label_map).fingerprint() == data.fingerprint()


def test_integer_labels_in_files_map_through_the_label_map(tmp_path: Path) -> None:
    path = write(tmp_path / "ints.csv", "text,label\nAcme beats,1\nAcme lifts payout,0\nBeta,\n")
    label_map = write(tmp_path / "map.json", json.dumps({"topic": {"0": "Dividend", "1": "Earnings"}}))
    data = load_dataset(f"{path}#topic=label#sentiment=-", topics=TOPICS, label_map=label_map)
    assert [TOPICS[i] for i in data.topics] == ["Earnings", "Dividend"]
    with pytest.raises(DataError, match=r"ints\.csv: row 1: unknown topic label '1'"):
        load_dataset(f"{path}#topic=label#sentiment=-", topics=TOPICS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a.csv#colour=red", "bad source option 'colour=red'"),
        ("a.csv#topic", "bad source option 'topic'"),
        ("a.csv#topic=-#sentiment=-", "needs a topic or a sentiment column"),
        ("hf:no-owner", "expected hf:OWNER/NAME"),
    ],
)
def test_bad_source_specs(spec: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        parse_source(spec)


def test_source_spec_parts() -> None:
    src = parse_source("hf:zeroshot/news:validation:en#topic=label#sentiment=-", Columns(text="body"))
    assert (src.location, src.split) == ("hf:zeroshot/news:validation:en", "validation")
    assert src.columns == Columns(text="body", topic="label", sentiment="-")


def test_missing_label_column_says_how_to_mark_a_partial_source(tmp_path: Path) -> None:
    path = write(tmp_path / "topics.csv", "text,topic\nAcme,Earnings\n")
    with pytest.raises(DataError, match=r"missing column\(s\) 'sentiment'.*#sentiment=-"):
        load_dataset(path, topics=TOPICS)
    assert load_dataset(f"{path}#sentiment=-", topics=TOPICS).topics.tolist() == [0]


def test_a_bad_second_source_stops_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.csv", "text,topic,sentiment\nAcme beats,Earnings,positive\n")
    bad = write(tmp_path / "bad.csv", "text,topic,sentiment\nAcme,Earnings,positive\nBeta,Weather,neutral\n")
    out = tmp_path / "a"
    code = main(["train", "--data", str(good), "--data", str(bad), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}: row 2: unknown topic label 'Weather'" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_hf_source_not_in_the_cache_exits_2_offline(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_DATASETS_OFFLINE="1")
    spec = "hf:zeroshot/twitter-financial-news-sentiment#sentiment=label#topic=-"
    proc = subprocess.run(
        finsent_argv("train", "--data", spec, "--out", str(tmp_path / "a")),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "hf:zeroshot/twitter-financial-news-sentiment: cannot load split 'train'" in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a").exists()


def test_the_shipped_twitter_label_map_covers_the_default_taxonomy() -> None:
    from training.data import DEFAULT_TOPICS, read_label_map

    mapping = read_label_map(REPO / "data" / "label_maps" / "twitter-financial-news.json")
    assert [mapping["topic"][str(i)] for i in range(20)] == list(DEFAULT_TOPICS)
    assert mapping["sentiment"] == {"0": "negative", "1": "positive", "2": "neutral"}


def test_evaluate_reads_the_same_sources(
    tmp_path: Path, tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentiment = saved_sentiment_set(tmp_path)
    label_map = write(tmp_path / "map.json", json.dumps({"sentiment": ["negative", "positive", "neutral"]}))
    spec = f"{sentiment}#text=tweet#sentiment=label#topic=-"
    code = main(["evaluate", str(tiny_artifact), spec, "--label-map", str(label_map), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"sentiment_accuracy", "sentiment_macro_f1"}  # no topic labels: no topic report
