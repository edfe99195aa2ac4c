"""The gateway's clock against the cloud's time beacon (edge_agent/clock.py)."""

from __future__ import annotations

from edge_agent.clock import ClockSkew


def test_the_smallest_recent_sample_is_the_skew() -> None:
    c = ClockSkew(window_s=60)
    assert c.skew(mono=0.0) is None  # no beacon heard: unknown, not 0
    # our clock 30 s ahead; deliveries take 0.01 .. 2 s, which only ever add
    for i, delay in enumerate([2.0, 0.01, 0.5, 1.2]):
        beacon = 1_800_000_000.0 + 5 * i
        c.sample(beacon + 30.0 + delay, beacon, mono=5.0 * i)
    assert abs(c.skew(mono=20.0) - 30.01) < 1e-6  # type: ignore[operator]


def test_samples_age_out_so_a_corrected_clock_shows() -> None:
    c = ClockSkew(window_s=60)
    c.sample(1_800_000_100.0, 1_800_000_000.0, mono=0.0)  # 100 s ahead
    c.sample(1_800_000_070.05, 1_800_000_070.0, mono=70.0)  # NTP fixed it
    assert abs(c.skew(mono=70.0) - 0.05) < 1e-6  # type: ignore[operator]
    assert c.skew(mono=200.0) is None  # nothing heard for longer than the window
