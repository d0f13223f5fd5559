"""tenancy.escape: outside text made safe for log lines, terminals (rich) and databases."""

from __future__ import annotations

import io
import unicodedata

from rich.console import Console

from tenancy.escape import markup, printable, storable, storable_key


def test_printable_leaves_ordinary_text_alone() -> None:
    assert printable("évènement 42 ✓ [ok]") == "évènement 42 ✓ [ok]"


def test_printable_makes_every_control_visible_on_one_line() -> None:
    text = "a\nb\r\x1b[2J\x00\x07\x9b\u202e\ud800\\x1b"
    escaped = printable(text)
    assert escaped == "a\\nb\\r\\x1b[2J\\x00\\x07\\x9b\\u202e\\ud800\\\\x1b"
    assert escaped.isprintable()  # no newline, no escape, nothing a terminal interprets


def test_markup_is_shown_by_rich_not_interpreted() -> None:
    hostile = "[link=https://evil.example]click[/link] [bold red]boom[/] \x1b]0;title\x07"
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system=None, width=200).print(markup(hostile))
    shown = out.getvalue()
    assert "[link=https://evil.example]click[/link] [bold red]boom[/]" in shown
    assert "\x1b]8;" not in shown and "\x07" not in shown  # no hyperlink, no bell


def test_storable_escapes_only_what_a_database_refuses() -> None:
    assert storable("a\nb é") == "a\nb é"
    assert storable("evt-\x00-\ud800") == "evt-\\x00-\\ud800"
    assert storable("evt-\x00") == storable("evt-\x00")  # deterministic: de-duplication still works


def test_a_key_is_kept_as_sent_when_storable_and_else_by_its_digest_so_no_two_keys_meet() -> None:
    assert storable_key("evt-é\n", 255) == "evt-é\n"
    keys = {storable_key(k, 12) for k in ("a\x00", "a\\x00", "a\udcff", "a\\udcff", "a" * 13, "a" * 12 + "b")}
    assert len(keys) == 6
    assert storable_key("a\x00", 12) == storable_key("a\x00", 12)  # deterministic: a redelivery is a duplicate
    assert all(storable_key(k, 12).startswith("sha256:") for k in ("a\x00", "a\udcff", "a" * 13))


def test_every_format_character_is_escaped_bidi_marks_included() -> None:
    assert printable("a\u200eb\u200fc\u061cd") == "a\\u200eb\\u200fc\\u061cd"
    unescaped = [hex(c) for c in range(0x110000)
                 if unicodedata.category(chr(c)) == "Cf" and printable(chr(c)) == chr(c)]
    assert unescaped == []
