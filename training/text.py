"""Text clean-up that travels inside the tokenizer, so training and the daemon see the same tokens.

Links are dropped before tokenization: most news posts end with a shortened link (`https://t.co/…`)
whose random path costs 10-20 word pieces and carries nothing a head could learn. Doing it in the
tokenizer's own normalizer (saved in the artifact's tokenizer.json) means the ONNX `Scorer`, which
only loads that file, applies the same rule with no code of its own.
"""

from __future__ import annotations

from typing import Any

# A scheme or "www." up to the next whitespace.
URL_PATTERN = r"(?:https?://|www\.)\S+"


def strip_urls(tokenizer: Any) -> Any:
    """Prepend a URL -> space rule to a fast tokenizer's normalizer (in place); returns the tokenizer."""
    from tokenizers import Regex, normalizers

    backend = tokenizer.backend_tokenizer
    rule = normalizers.Replace(Regex(URL_PATTERN), " ")
    current = backend.normalizer
    backend.normalizer = rule if current is None else normalizers.Sequence([rule, current])
    return tokenizer
