"""The changelog value format: round trip, a pinned v1 record, and corrupt input."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from schemas.events import ConnectionState as S
from schemas.events import Event
from streams import changelog_format
from streams.changelog_format import ChangelogFormatError
from streams.status import TenantStatus, apply
from tests.streams.events import T0, mail, session


def build() -> TenantStatus:
    m1 = session("acme", "m1", [S.CONNECTING, S.ERROR, S.CONNECTING, S.CONNECTED])
    m1[1] = dataclasses.replace(m1[1], reason="timed out", error_class="ConnectTimeout")
    events: list[Event] = [
        *m1,
        mail("acme", "m1", 4),
        mail("acme", "m1", 9, folder="Ünïcode"),
        mail("acme", "m2", 1, email_type="groups"),
    ]
    t = None
    for e in events:
        t = apply(t, e)
    assert t is not None
    return dataclasses.replace(t, untracked_events=3)


def test_round_trip() -> None:
    t = build()
    assert changelog_format.loads(changelog_format.dumps(t)) == t


# Tables are rebuilt from records written by older code: v1 must stay readable as written.
V1 = (
    b'{"v":1,"tenant":"acme","rows":{"m1":{"type":"reservations","state":"connected",'
    b'"prev":"connecting","at":[1795510804000000,"s1",4],"producer":"p1",'
    b'"error":["timed out","ConnectTimeout",[1795510802000000,"s1",2]],"reconnects":1,'
    b'"last_mail":1795511340000000,"day":["2026-11-24",2],'
    b'"seen":[["INBOX",7,[[4,4]]],["\xc3\x9cn\xc3\xafcode",7,[[9,9]]]]},'
    b'"m2":{"type":"groups","producer":"p1","last_mail":1795510860000000,'
    b'"day":["2026-11-24",1],"seen":[["INBOX",7,[[1,1]]]]}},"untracked":3}'
)


def test_v1_is_pinned() -> None:
    assert changelog_format.dumps(build()) == V1
    t = changelog_format.loads(V1)
    assert t.mailboxes["m1"].since == T0 + timedelta(seconds=4)  # 1795510804 s after the epoch
    assert t.mailboxes["m1"].last_error is not None
    assert t.mailboxes["m1"].last_error.error_class == "ConnectTimeout"


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"v":2,"tenant":"a","rows":{}}', b'{"v":1,"rows":{}}',
     b'{"v":1,"tenant":"a","rows":{"m":{"state":"idle"}}}',
     b'{"v":1,"tenant":"a","rows":{"m":{"type":"x","state":"sleepy"}}}'],
)
def test_corrupt_values_raise_one_error_type(data: bytes) -> None:
    with pytest.raises(ChangelogFormatError):
        changelog_format.loads(data)
