"""Recognising a model from its identify registers (device_profiles/identify.py), against register
values written by hand from docs/profiles.md ("Identify"), and firmware ranges."""

from __future__ import annotations

import pytest

from device_profiles.identify import Answer, firmware_in_range, identify, match, requests
from device_profiles.loader import catalog
from device_profiles.model import Table

H, IN, DI = Table.HOLDING, Table.INPUT, Table.DISCRETE_INPUT
# docs/profiles.md: a VoltPile CP-10 answers input 900-901 "VOLT", 902 = 10, 903-904 "2.31".
VOLTPILE = {(IN, 900, 2): Answer(registers=(0x564F, 0x4C54)), (IN, 902, 1): Answer(registers=(10,)),
            (IN, 903, 2): Answer(registers=(0x322E, 0x3331))}
# An AquaGuard stores registers byte-swapped: "AQUAGUARD" is AQ UA GU AR D\0 with the bytes swapped.
AQUAGUARD = {(H, 0, 5): Answer(registers=(0x5141, 0x4155, 0x5547, 0x5241, 0x0044)),
             (H, 5, 2): Answer(registers=(0x4D52, 0x342D)), (H, 7, 2): Answer(registers=(0x2E31, 0x0036))}
# A Nanfang FSM-8 has no identification registers: eight inputs, and exception 2 just past its map.
NANFANG = {(DI, 7, 1): Answer(registers=(0,)), (DI, 8, 1): Answer(exception=2), (IN, 2, 1): Answer(exception=2)}


def test_hand_written_answers_identify_exactly_one_model() -> None:
    profiles = list(catalog().values())
    for answers, want in ((VOLTPILE, "voltpile-cp10"), (AQUAGUARD, "aquaguard-rm4"), (NANFANG, "nanfang-fsm8")):
        full = {rk: answers.get(rk, Answer(exception=2)) for rk in requests(profiles)}
        fits = [m.profile for m in identify(profiles, full) if m.fits]
        assert fits == [want]
    m = match(catalog()["voltpile-cp10"], VOLTPILE)
    assert m.values == {"vendor": "VOLT", "model": 10, "firmware": "2.31"} and m.firmware_ok is True
    assert match(catalog()["aquaguard-rm4"], AQUAGUARD).values["model"] == "RM-4"


def test_reasons_say_what_did_not_fit() -> None:
    other = {**VOLTPILE, (IN, 900, 2): Answer(registers=(0x4143, 0x4D45))}  # "ACME"
    m = match(catalog()["voltpile-cp10"], other)
    assert not m.fits and m.reasons == ["vendor (input 900): expected 'VOLT', got 'ACME'"]
    silent = match(catalog()["nanfang-fsm8"], {**NANFANG, (DI, 8, 1): Answer(failure="timeout")})
    assert silent.reasons == ["after_inputs (discrete_input 8): expected exception 2, got timeout"]
    old_fw = match(catalog()["voltpile-cp10"], {**VOLTPILE, (IN, 903, 2): Answer(registers=(0x312E, 0x3900))})
    assert old_fw.fits and old_fw.firmware == "1.9" and old_fw.firmware_ok is False


def test_every_catalog_model_has_a_signature_and_no_two_are_alike() -> None:
    for p in catalog().values():
        assert p.identify is not None, p.id
        if p.is_modbus:
            assert any(r.signature for r in p.identify.reads), p.id
    # Two models whose every identify read is the same request with the same expectation would be
    # indistinguishable: each Modbus model needs one read the others do not make the same way.
    sigs = {p.id: {(r.table, r.address, r.expect, r.exception) for r in p.identify.reads if r.signature}  # type: ignore[union-attr]
            for p in catalog().values() if p.is_modbus}
    for a, sa in sigs.items():
        for b, sb in sigs.items():
            assert a == b or not sa <= sb, f"{a}'s signature is part of {b}'s"


@pytest.mark.parametrize(("spec", "version", "ok"), [
    ("*", "9.9", True), (">=2.0,<3.0", "2.31", True), (">=2.0,<3.0", "3.0", False), (">=2.0,<3.0", "1.9", False),
    ("3.*", "3.12", True), ("3.*", "2.9", False), (">=1.4", "V1.6", True), ("==1.2", "1.2.0", True),
    (">=2.0", "not a version", None), ("~=x", "1.0", None),
])
def test_firmware_ranges(spec: str, version: str, ok: bool | None) -> None:
    assert firmware_in_range(spec, version) is ok
