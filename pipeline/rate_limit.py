"""A token bucket with time as data: `allow(now)` says whether one more item may go out.

Used to bound what the daemon samples into side topics (`news.shadow`), where a flood of
disagreements would otherwise cost more than the scoring it describes.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.last = now

    def allow(self, now: float) -> bool:
        # a clock that steps back (never with time.monotonic, possible with injected times) adds nothing
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = max(self.last, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
