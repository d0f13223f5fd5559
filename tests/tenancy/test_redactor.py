"""Scrubbing registered secrets out of text: every occurrence masked, whatever the number of secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tenancy import redact
from tenancy.redact import MASK, Redactor


def redactor(*values: str, many: bool) -> Redactor:
    """A redactor holding VALUES; with MANY, past the count where it switches to its prefix index."""
    r = Redactor()
    r.add(*values)
    if many:
        r.add(*(f"filler-secret-{i:05d}" for i in range(redact._DIRECT_MAX + 1)))
    return r


@pytest.fixture(params=[False, True], ids=["few secrets", "many secrets"])
def many(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_every_occurrence_is_masked(many: bool) -> None:
    r = redactor("tok_abcdef", "whsec_123456", many=many)
    assert r.scrub("a tok_abcdef b tok_abcdef c whsec_123456") == f"a {MASK} b {MASK} c {MASK}"


def test_overlapping_secrets_are_masked_whole(many: bool) -> None:
    r = redactor("abcdef12", "ef12345678", many=many)
    # Neither may leave a piece of itself visible, whichever is longer.
    assert r.scrub("xxabcdef12345678yy") == f"xx{MASK}yy"
    assert r.scrub("abcdef12") == MASK


def test_a_secret_inside_another_is_masked_with_it(many: bool) -> None:
    r = redactor("inner-secret", "outer-inner-secret-tail", many=many)
    assert r.scrub("[outer-inner-secret-tail]") == f"[{MASK}]"
    assert r.scrub("[inner-secret]") == f"[{MASK}]"


def test_adjacent_secrets_are_each_masked(many: bool) -> None:
    r = redactor("first-secret", "second-secret", many=many)
    assert r.scrub("first-secretsecond-secret") == MASK + MASK


def test_text_without_secrets_is_unchanged(many: bool) -> None:
    r = redactor("tok_abcdef", many=many)
    for text in ("", "tok", "tok_abcde", "nothing to see here"):
        assert r.scrub(text) == text


def test_values_too_short_or_the_placeholder_are_not_registered() -> None:
    r = Redactor()
    r.add("8080", None, "", "CHANGE-ME", SecretStr("s3cret-value"))
    assert r.scrub("port 8080 CHANGE-ME s3cret-value") == f"port 8080 CHANGE-ME {MASK}"


def test_a_secret_added_later_is_masked_from_then_on(many: bool) -> None:
    r = redactor("tok_abcdef", many=many)
    assert r.scrub("new-secret-value") == "new-secret-value"
    r.add("new-secret-value")
    assert r.scrub("new-secret-value") == MASK


def test_a_hundred_thousand_secrets_are_all_found() -> None:
    r = Redactor()
    values = [f"tenant-{i:06d}-webhook-secret" for i in range(100_000)]
    r.add(*values)
    line = f'POST /api/webhooks/hospitable/t/x {values[0]} {values[54_321]} {values[-1]}'
    assert r.scrub(line) == f"POST /api/webhooks/hospitable/t/x {MASK} {MASK} {MASK}"


def test_outside_text_repeating_a_shared_prefix_costs_no_more_than_any_other_text() -> None:
    # Admins' secrets of one provider share a prefix and come in many lengths (access tokens); a client
    # controls the URL path and user agent that every access-log line carries, and may know the prefix.
    import random
    import string
    import time

    rng = random.Random(7)
    r = Redactor()
    r.add(*("EAAOZB" + "".join(rng.choices(string.ascii_letters, k=rng.randint(100, 300))) for _ in range(2000)))
    hostile, plain = "EAAOZB" * 2000, "EAAOZA" * 2000

    def cost(text: str) -> float:
        started = time.perf_counter()
        for _ in range(5):
            assert r.scrub(text) == text
        return time.perf_counter() - started

    assert cost(hostile) < 5 * cost(plain) + 0.01


def test_secrets_sharing_long_prefixes_are_all_found_at_every_length() -> None:
    import random

    rng = random.Random(3)
    for _ in range(300):
        values = ["".join(rng.choices("ab", k=rng.randint(6, 20))) for _ in range(rng.randint(1, 12))]
        text = "".join(rng.choices("ab", k=60))
        few, many_ = redactor(*values, many=False), redactor(*values, many=True)
        assert many_.scrub(text) == few.scrub(text), (values, text)
