"""bench/early_warning.py on a small sample (the 10,000-session evaluation is the bench's, not the
suite's): a failing cabinet and a normal one played side by side through the analytics, today's rules
and the edge's cut-off, and the report refuses to print figures when a side played nothing."""

from __future__ import annotations

import argparse

from bench.early_warning import RunSpec, detected, report, simulate


def test_a_failing_and_a_normal_cabinet_are_played_and_reported(capsys) -> None:  # type: ignore[no-untyped-def]
    failing = simulate(RunSpec(0, 11, "voltpile-cp10", "mild_day", "bms_failure", 0.0, "fast", 0.9), 20.0, hours=1.0)
    normal = simulate(RunSpec(1, 12, "hengtong-ebc12", "cold_night"), 20.0, hours=1.0)
    bad = [r for r in failing if r.label == "bms_failure"]
    assert len(bad) == 1 and bad[0].cut_t is not None, "left alone, the failing pack reaches the cut-off"
    assert detected(bad[0], bad[0].warn_t) and bad[0].warn_t < bad[0].cut_t  # type: ignore[operator]
    assert bad[0].failure_peak_k >= 5 and bad[0].warn_reason
    assert len(normal) >= 5 and all(r.end is not None and r.end > r.start for r in normal)
    assert not [r for r in normal if r.warn_t is not None]
    args = argparse.Namespace(dt=20.0, seed=0, workers=1)
    out = report(failing + normal, 1.0, args)
    text = capsys.readouterr().out
    assert "bms_failure" in text and "false warnings" in text and "targets" in text
    assert out["modes"]["bms_failure"]["detected"] == 1.0
    assert report([r for r in normal], 1.0, args) == {}
    assert "refusing to print figures" in capsys.readouterr().out
