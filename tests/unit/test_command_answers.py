"""A gateway's `cmd-result` recorded by Commander (cloud/api/commands.py): every replica of a cluster
hears the same answer, so the record keeps the time it was first answered; only the gateway the
command went to may answer; a page waiting on one replica wakes even if another recorded it first.
Payloads written by hand from docs/wire.md ("cmd-result")."""

from __future__ import annotations

import threading
from pathlib import Path

from cloud.api.commands import Commander
from cloud.auth.models import CommandRecord, make_engine, make_sessionmaker

CID = "c0ffee0012345678"
TOPIC = "sw/v1/site-a/gw-1/chg-1/cmd-result"


def answer(status: str, detail: str = "port switched off") -> bytes:
    return (f'{{"ts":"2026-12-03T05:00:00Z","id":"{CID}","status":"{status}","detail":"{detail}"}}').encode()


def setup(tmp_path: Path) -> tuple[Commander, Commander]:
    db = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'web.db'}"))
    with db.begin() as s:
        s.add(CommandRecord(id=CID, site="site-a", gateway="gw-1", device="chg-1", command="port_enable",
                            index=3, value=0, by="manager", status="sent"))
    # two replicas' web parts on one database; never started: no broker is needed to record answers
    return Commander(db, "mqtt://127.0.0.1:1"), Commander(db, "mqtt://127.0.0.1:1")


def test_the_same_answer_heard_by_two_replicas_keeps_its_first_time(tmp_path: Path) -> None:
    one, two = setup(tmp_path)
    one._on_message(TOPIC, answer("done"))
    first = one.get(CID)
    assert first is not None and first.status == "done" and first.answered is not None
    two._on_message(TOPIC, answer("done"))
    one._on_message(TOPIC, answer("done"))  # a redelivery
    assert two.get(CID) == first
    one._on_message(TOPIC, answer("failed", "relay stuck"))  # a different answer is news
    later = two.get(CID)
    assert later is not None and (later.status, later.detail) == ("failed", "relay stuck")
    assert later.answered is not None and later.answered >= first.answered


def test_only_the_gateway_it_went_to_may_answer(tmp_path: Path) -> None:
    one, _ = setup(tmp_path)
    waiting = threading.Event()
    one._waiting[CID] = waiting
    one._on_message("sw/v1/site-a/gw-2/chg-1/cmd-result", answer("done"))
    one._on_message("sw/v1/site-b/gw-1/chg-1/cmd-result", answer("done"))
    one._on_message("sw/v1/site-a/gw-1/chg-9/cmd-result", answer("done"))
    rec = one.get(CID)
    assert rec is not None and (rec.status, rec.answered) == ("sent", None) and not waiting.is_set()


def test_a_waiting_page_wakes_when_another_replica_recorded_the_answer_first(tmp_path: Path) -> None:
    one, two = setup(tmp_path)
    waiting = threading.Event()
    one._waiting[CID] = waiting
    two._on_message(TOPIC, answer("done"))
    one._on_message(TOPIC, answer("done"))
    assert waiting.is_set()
