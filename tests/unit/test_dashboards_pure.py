"""Pure helpers of dashboards/: Grafana-style variable expansion and the line-protocol writer."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dashboards.sample_data import line
from dashboards.templating import format_value

values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(st.lists(values, min_size=1, max_size=5, unique=True), values)
def test_expanded_regex_matches_exactly_the_selected_values(selected: list[str], other: str) -> None:
    """`/^$var$/` with the expansion matches each selected value and nothing else, whatever it contains."""
    rx = re.compile("^" + format_value(selected) + "$")
    assert all(rx.fullmatch(v) for v in selected)
    assert bool(rx.fullmatch(other)) == (other in selected)
    assert "/" not in format_value(selected).replace("\\/", "")  # cannot close the InfluxQL regex


def test_line_protocol_types_and_escapes() -> None:
    got = line(
        "parking_bay",
        {"site": "old estate, north", "zone": "a=b", "empty": ""},
        {"occupied": True, "battery": 3, "state": 'say "hi"'},
        1700000000000,
    )
    assert got == (
        "parking_bay,site=old\\ estate\\,\\ north,zone=a\\=b "
        'occupied=true,battery=3.0,state="say \\"hi\\"" 1700000000000'
    )
