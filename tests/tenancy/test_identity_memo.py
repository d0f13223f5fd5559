"""A memo by identity: what a reload derives from each tenant is derived again only for new tenant objects."""

from __future__ import annotations

from tenancy.identity_memo import IdentityMemo


class Obj:
    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:  # equal by name, as two loads of one file are
        return isinstance(other, Obj) and other.name == self.name

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a Tenant is


def counting() -> tuple[IdentityMemo[Obj, str], list[str]]:
    computed: list[str] = []

    def compute(o: Obj) -> str:
        computed.append(o.name)
        return o.name.upper()

    return IdentityMemo(compute), computed


def test_the_same_objects_again_are_not_computed_again() -> None:
    memo, computed = counting()
    a, b = Obj("a"), Obj("b")
    assert memo.map([a, b]) == ["A", "B"]
    assert memo.map([b, a]) == ["B", "A"]
    assert computed == ["a", "b"]


def test_an_equal_but_new_object_is_computed_afresh() -> None:
    memo, computed = counting()
    a = Obj("a")
    memo.map([a])
    memo.map([Obj("a")])
    assert computed == ["a", "a"]


def test_only_the_latest_round_is_kept() -> None:
    memo, computed = counting()
    a, b = Obj("a"), Obj("b")
    memo.map([a, b])
    memo.map([a])  # b left (its file was deleted): forgotten
    memo.map([a, b])
    assert computed == ["a", "b", "b"]
