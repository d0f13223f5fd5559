"""`tenantctl access matrix`: who can open which door of the example tenants, and at a given moment."""

from __future__ import annotations

import json

from tests.access.conftest import EXAMPLES
from tests.conftest import RunCli

ENV = {"SOPS_AGE_KEY_FILE": str(EXAMPLES / "demo.agekey")}
WEEK = "Mon\u2013Fri 08:00\u201318:00 Europe/Bratislava"


def test_the_matrix_of_the_examples_lists_every_door_and_who_opens_it(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", env=ENV)
    assert r.code == 0, r.all
    assert r.out.splitlines() == [
        "acme / old-town-2 (Old Town Loft 2), Europe/Bratislava",
        "  Nuki lock 17010001:",
        f"    Maria Lopez (maria): keypad; {WEEK}",
        "  Nuki lock 17010002:",
        f"    Maria Lopez (maria): keypad; {WEEK}",
        "  2N intercom 54-0123-4567:",
        "    Maria Lopez (maria): pin; any time",  # the intercom enforces dates only
        "acme / riverside (Riverside Studio), Europe/Bratislava",
        "  Nuki lock 17010003:",
        f"    Maria Lopez (maria): keypad; {WEEK}",
        "    Tom Berg (tom): keypad; any time",
        "blue-harbor / harbor-view (Harbor View Apartment), Europe/Bratislava",
        "  Nuki lock 17020001:",
        "    Ana Costa (ana): keypad; 2026-01-01 to 2027-12-31 Europe/Bratislava",
        "  Nuki lock 17020002:",
        "    Ana Costa (ana): keypad; 2026-01-01 to 2027-12-31 Europe/Bratislava",
    ]


def test_at_christmas_eve_night_only_tom_opens_riverside(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", "acme", "--at", "2026-12-24 22:00",
            "--format", "json", env=ENV)
    assert r.code == 0, r.all
    doc = json.loads(r.out)
    who = {(d["property"], d["id"]): [t["teammate"] for t in d["teammates"]] for d in doc["doors"]}
    assert who == {("old-town-2", "17010001"): [], ("old-town-2", "17010002"): [],
                   ("old-town-2", "54-0123-4567"): ["maria"], ("riverside", "17010003"): ["tom"]}
    assert doc["at"] == "2026-12-24T22:00:00"


def test_on_a_weekday_morning_maria_opens_every_door_she_has(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", "acme", "--at", "2026-12-23 08:00",
            "--format", "markdown", env=ENV)
    assert r.code == 0, r.all
    rows = [ln for ln in r.out.splitlines() if ln.startswith("| acme")]
    assert len([ln for ln in rows if "| Maria Lopez |" in ln]) == 4
    assert "| acme | riverside | Nuki lock 17010003 | Tom Berg | keypad | any time |" in rows


def test_a_date_outside_anas_window_leaves_harbor_view_closed(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", "blue-harbor", "--at", "2028-01-01 12:00", env=ENV)
    assert r.code == 0, r.all
    assert "Nuki lock 17020001: nobody at that moment" in r.out


def test_bad_input_is_refused_clearly(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", "--at", "Christmas", env=ENV)
    assert r.code != 0 and "--at" in r.all
    r = cli("--tenants", str(EXAMPLES), "access", "matrix", "nobody", env=ENV)
    assert r.code == 1 and "no tenant 'nobody'" in r.err
