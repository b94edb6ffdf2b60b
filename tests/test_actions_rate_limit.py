"""The partner rate limit holds on the times calls go out, even when a waiting caller wakes late."""

from __future__ import annotations

from itertools import pairwise

from actions.client import RateLimiter


class LateClock:
    """A clock whose sleeps overrun by ``late`` seconds, as threads do on a busy interpreter."""

    def __init__(self, late: float) -> None:
        self.now, self.late = 0.0, late

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late


def test_calls_never_go_out_closer_than_the_limit_allows() -> None:
    clock = LateClock(late=0.03)
    limiter = RateLimiter(50, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(200):
        limiter.acquire()
        sent.append(clock())
    assert min(b - a for a, b in pairwise(sent)) >= 0.02 - 1e-9
    assert max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent) <= 50


def test_an_idle_partner_is_called_at_once() -> None:
    clock = LateClock(late=0.03)
    limiter = RateLimiter(50, clock=clock, sleep=clock.sleep)
    clock.now = 100.0
    assert limiter.acquire() == 0.0
