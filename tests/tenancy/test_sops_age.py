"""The in-process age reader decrypts exactly what the real sops binary decrypts, and refuses the rest."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from ruamel.yaml import YAML

from tenancy.sops_age import (
    SopsError,
    SopsInvalidIdentity,
    SopsMacMismatch,
    SopsNoMatchingKey,
    SopsUnsupported,
    decrypt_document,
    parse_identities,
)
from tests.tenancy.conftest import AgeKeyPair, BinaryResult, dump_yaml

SECRET_REGEX = "^(api_key|token|password|webhook_secret|app_secret)$"
SECRET_KEYS = ["api_key", "token", "password", "webhook_secret", "app_secret"]
PLAIN_KEYS = [
    "slug", "name", "enabled", "ratio", "notes", "host", "port", "phone_number_id", "property_ids",
    "locks", "label", "city", "max_guests", "token_hint", "password_rotated", "smtp", "whatsapp",
]  # fmt: skip
TRICKY_STRINGS = [
    "", "yes", "no", "on", "off", "y", "~", "null", "True", "false", "017", "0x1F", "1_000", "1e5", ".inf",
    "2024-01-01", "12:30", "  lead", "trail  ", "tab\there", "a: b", "- x", "#hash", "multi\nline\n",
    "quote'\"", "back\\slash", "üñï €😀 中文", "ENC[not really]", "%percent", "@at", "`tick`", "{x}", "[y]",
    "line\r\nbreak", "\u00a0nbsp", "0", "-1", "1.0",
]  # fmt: skip
TRICKY_NUMBERS: list[Any] = [
    0, -1, 2**63 - 1, -(2**63), 0.1, 1.0, 1e-7, 1.5e-7, 1e21, 1e300, 5e-324, 123456789.123, 3.0,
    True, False, None,
]  # fmt: skip


def load(text: str) -> Any:
    return YAML(typ="rt").load(text)


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Equal values and types; a whole float may come back from sops' JSON as an int (1.0 -> 1)."""
    if isinstance(theirs, dict):
        assert type(ours) is dict, where
        assert list(ours) == list(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert type(ours) is list and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, bool) or theirs is None or isinstance(theirs, str):
        assert type(ours) is type(theirs) and ours == theirs, where
    elif type(ours) is float:
        assert isinstance(theirs, int | float) and ours == theirs, where
        assert math.copysign(1, ours) == math.copysign(1, theirs) or theirs == 0, where
    else:
        assert type(ours) is int and type(theirs) is int and ours == theirs, where


# --- random tenant-like trees ------------------------------------------------------------------


def random_scalar(rng: random.Random) -> Any:
    kind = rng.randrange(10)
    if kind <= 3:
        return rng.choice(TRICKY_STRINGS) if rng.random() < 0.4 else random_text(rng)
    if kind == 4:
        return rng.choice([rng.randint(-1000, 1000), rng.randint(-(2**62), 2**62)])
    if kind == 5:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random(), round(rng.uniform(0, 500), 2)])
    if kind == 6:
        return rng.choice(TRICKY_NUMBERS)
    if kind == 7:
        return rng.random() < 0.5
    if kind == 8:
        return ""
    return None


def random_text(rng: random.Random) -> str:
    alphabet = "abcxyz ABC0129_-.:/@#'\"\\\n\tüé€😀中"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
    # Multi-line text with leading whitespace is left out: go-yaml writes it in ways that ruamel misreads
    # in lists (`- |4`) or, for a leading tab, as null (sops 3.11 then fails its own MAC).
    return text.lstrip(" \t\n") or "x"


def random_tree(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = rng.sample(PLAIN_KEYS + SECRET_KEYS, rng.randrange(1, 7))
    tree: dict[str, Any] = {}
    for key in keys:
        shape = rng.random()
        if depth < 3 and shape < 0.15:
            tree[key] = random_tree(rng, depth + 1)
        elif depth < 3 and shape < 0.3:
            tree[key] = [random_tree(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
        elif shape < 0.4:
            tree[key] = [random_scalar(rng) for _ in range(rng.randrange(0, 4))]
        else:
            tree[key] = random_scalar(rng)
    return tree


def tenant_tree(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tree: dict[str, Any] = {"slug": f"tenant-{seed}", "name": random_text(rng)}
    tree.update(random_tree(rng))
    tree["hospitable"] = {"webhook_secret": random_text(rng), "property_ids": [rng.randint(1, 10**6)]}
    return tree


def test_random_tenant_trees_decrypt_as_the_binary_does(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    def both(seed: int) -> tuple[int, Any, BinaryResult]:
        text = sops_encrypt(tenant_tree(seed), "--encrypted-regex", SECRET_REGEX)
        return seed, load(text), sops_decrypt(text)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(both, range(50)))
    for seed, doc, binary in results:
        assert binary.returncode == 0, (seed, binary.stderr)
        assert_same(decrypt_document(doc, [age_key.identity]), binary.data, f"seed {seed}")


# --- the encryption rules and MAC modes ---------------------------------------------------------

RULE_TREE = {
    "slug": "acme",
    "api_key": "k-1",
    "port": 587,
    "db_secret": {"user": "u", "pass": "p", "n": [1, 2.5, True]},
    "note_plain": "visible",
    "meta_plain": {"owner": "ops", "ids": [1, 2]},
    "legacy_unencrypted": {"note": "open", "list": [{"k": "v"}]},
    "nested": {"token": "t", "label_unencrypted": "open", "list": [{"password": "x", "host": "h"}]},
}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="default-unencrypted-suffix"),
        pytest.param(["--encrypted-regex", SECRET_REGEX], id="encrypted-regex"),
        pytest.param(["--unencrypted-regex", r"^(slug|port|\w+_plain)$"], id="unencrypted-regex"),
        pytest.param(["--encrypted-suffix", "_secret"], id="encrypted-suffix"),
        pytest.param(["--unencrypted-suffix", "_plain"], id="unencrypted-suffix"),
    ],
)
def test_every_encryption_rule_decrypts_as_the_binary_does(
    args: list[str],
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    text = sops_encrypt(RULE_TREE, *args)
    binary = sops_decrypt(text)
    assert binary.returncode == 0, binary.stderr
    assert_same(decrypt_document(load(text), [age_key.identity]), binary.data)


def test_tricky_scalars_plain_and_encrypted_decrypt_as_the_binary_does(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    values = TRICKY_STRINGS + TRICKY_NUMBERS
    tree = {
        "plain": {f"v{i}": v for i, v in enumerate(values)},
        "token": {f"v{i}": v for i, v in enumerate(values)},
        "password": values,
    }
    text = sops_encrypt(tree, "--encrypted-regex", SECRET_REGEX)
    binary = sops_decrypt(text)
    assert binary.returncode == 0, binary.stderr
    ours = decrypt_document(load(text), [age_key.identity])
    assert_same(ours, binary.data)
    assert ours["token"]["v0"] == "" and ours["password"][-1] is None


def test_result_is_plain_python_without_the_metadata(
    sops_encrypt: Callable[..., str], age_key: AgeKeyPair
) -> None:
    text = sops_encrypt(
        {"slug": "a", "token": "multi\nline", "l": [{"password": "p"}]},
        "--encrypted-regex",
        "^(token|password)$",
    )
    ours = decrypt_document(load(text), [age_key.identity])
    assert ours == {"slug": "a", "token": "multi\nline", "l": [{"password": "p"}]}
    assert type(ours["token"]) is str and type(ours["l"]) is list and type(ours["l"][0]) is dict


def test_a_single_key_group_and_several_identities_open_the_file(
    sops_encrypt: Callable[..., str], age_key: AgeKeyPair, other_age_key: AgeKeyPair
) -> None:
    doc = load(sops_encrypt({"token": "t", "n": 1}))
    sops = doc["sops"]
    sops["key_groups"] = [{"age": sops.pop("age")}]
    assert decrypt_document(doc, [other_age_key.identity, age_key.identity]) == {"token": "t", "n": 1}


# --- integrity ----------------------------------------------------------------------------------

SECRET_VALUES = ["s3cr3t-api-key-value", "tok-9f8e7d", "hunter2-password"]
BASE_TREE = {
    "slug": "acme",
    "enabled": True,
    "whatsapp": {"phone_number_id": "1234567890", "token": SECRET_VALUES[1]},
    "hospitable": {"api_key": SECRET_VALUES[0], "property_ids": [11, 12]},
    "smtp": {"host": "mail.example.com", "port": 587, "password": SECRET_VALUES[2]},
}


def flip_data(enc: str) -> str:
    start = enc.index("data:") + len("data:")
    return enc[:start] + ("B" if enc[start] == "A" else "A") + enc[start + 1 :]


def _tamper_enc_data(d: Any) -> None:
    d["smtp"]["password"] = flip_data(d["smtp"]["password"])


def _tamper_swap_enc(d: Any) -> None:
    d["whatsapp"]["token"], d["smtp"]["password"] = d["smtp"]["password"], d["whatsapp"]["token"]


def _tamper_plain_value(d: Any) -> None:
    d["whatsapp"]["phone_number_id"] = "1234567891"


def _tamper_drop_plain(d: Any) -> None:
    del d["hospitable"]["property_ids"]


def _tamper_reorder(d: Any) -> None:
    d["hospitable"]["property_ids"] = [12, 11]


def _tamper_plaintext_secret(d: Any) -> None:
    d["hospitable"]["api_key"] = "attacker-chosen"


def _tamper_mac(d: Any) -> None:
    d["sops"]["mac"] = flip_data(d["sops"]["mac"])


def _tamper_lastmodified(d: Any) -> None:
    d["sops"]["lastmodified"] = "2020-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_enc_data,
        _tamper_swap_enc,
        _tamper_plain_value,
        _tamper_drop_plain,
        _tamper_reorder,
        _tamper_plaintext_secret,
        _tamper_mac,
        _tamper_lastmodified,
    ],
)
def test_a_tampered_file_is_a_mac_mismatch_for_both_readers(
    tamper: Callable[[Any], None],
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    doc = load(sops_encrypt(BASE_TREE, "--encrypted-regex", SECRET_REGEX))
    assert decrypt_document(doc, [age_key.identity])["smtp"]["password"] == SECRET_VALUES[2]
    tamper(doc)
    with pytest.raises(SopsMacMismatch) as caught:
        decrypt_document(doc, [age_key.identity])
    assert sops_decrypt(dump_yaml(doc)).returncode != 0
    assert_no_secret_in(caught.value)


def assert_no_secret_in(error: BaseException) -> None:
    text = f"{error} {error!r} {error.__cause__!r} {error.__context__!r}"
    for secret in SECRET_VALUES:
        assert secret not in text


def test_the_mac_does_not_cover_types_for_either_reader(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    # sops hashes 587 and "587" alike: the model, not the MAC, must pin the types.
    doc = load(sops_encrypt(BASE_TREE, "--encrypted-regex", SECRET_REGEX))
    doc["smtp"]["port"] = "587"
    binary = sops_decrypt(dump_yaml(doc))
    assert binary.returncode == 0
    assert_same(decrypt_document(doc, [age_key.identity]), binary.data)
    assert binary.data["smtp"]["port"] == "587"


def test_mac_only_encrypted_leaves_plaintext_unprotected_for_both_readers(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    config = (
        f"creation_rules:\n  - age: {age_key.recipient}\n"
        f"    encrypted_regex: '{SECRET_REGEX}'\n    mac_only_encrypted: true\n"
    )
    doc = load(sops_encrypt(BASE_TREE, config=config))
    assert doc["sops"]["mac_only_encrypted"] is True
    binary = sops_decrypt(dump_yaml(doc))
    assert binary.returncode == 0
    assert_same(decrypt_document(doc, [age_key.identity]), binary.data)

    _tamper_plain_value(doc)
    binary = sops_decrypt(dump_yaml(doc))
    assert binary.returncode == 0
    assert_same(decrypt_document(doc, [age_key.identity]), binary.data)

    _tamper_enc_data(doc)
    with pytest.raises(SopsMacMismatch):
        decrypt_document(doc, [age_key.identity])
    assert sops_decrypt(dump_yaml(doc)).returncode != 0


def test_negative_zero_survives_encryption_but_breaks_sops_in_plaintext(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    encrypted = sops_encrypt({"token": -0.0}, "--encrypted-regex", "^token$")
    binary = sops_decrypt(encrypted)
    assert binary.returncode == 0
    assert_same(decrypt_document(load(encrypted), [age_key.identity]), binary.data)
    # sops writes a plaintext -0.0 as `-0`, reads it back as the int 0 and fails its own MAC.
    plain = sops_encrypt({"ratio": -0.0, "token": "t"}, "--encrypted-regex", "^token$")
    assert sops_decrypt(plain).returncode == 51
    with pytest.raises(SopsMacMismatch):
        decrypt_document(load(plain), [age_key.identity])


def test_lastmodified_is_authenticated_as_go_normalises_it(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    # Go parses and re-formats the time: "+00:00" and a fraction name the same additional data as "Z".
    doc = load(sops_encrypt(BASE_TREE, "--encrypted-regex", SECRET_REGEX))
    stamp = doc["sops"]["lastmodified"]
    assert stamp.endswith("Z")
    for variant in (stamp[:-1] + "+00:00", stamp[:-1] + ".5Z"):
        doc["sops"]["lastmodified"] = variant
        binary = sops_decrypt(dump_yaml(doc))
        assert binary.returncode == 0, binary.stderr
        assert_same(decrypt_document(doc, [age_key.identity]), binary.data)


def test_a_wrong_key_is_no_matching_key_for_both_readers(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    other_age_key: AgeKeyPair,
) -> None:
    text = sops_encrypt(BASE_TREE, "--encrypted-regex", SECRET_REGEX)
    with pytest.raises(SopsNoMatchingKey) as caught:
        decrypt_document(load(text), [other_age_key.identity])
    assert sops_decrypt(text, secret_key=other_age_key.secret_key).returncode == 128
    assert_no_secret_in(caught.value)
    with pytest.raises(SopsNoMatchingKey):
        decrypt_document(load(text), [])


# --- what the reader leaves to the binary -------------------------------------------------------

PGP_KEY = {"created_at": "2024-01-01T00:00:00Z", "enc": "-----BEGIN PGP MESSAGE-----\n...", "fp": "ABCD"}


def _pgp_only(s: Any) -> None:
    del s["age"]
    s["pgp"] = [PGP_KEY]


def _shamir(s: Any) -> None:
    s["key_groups"] = [{"age": s.pop("age")}, {"pgp": [PGP_KEY]}]
    s["shamir_threshold"] = 1


def _pgp_key_group_only(s: Any) -> None:
    del s["age"]
    s["key_groups"] = [{"pgp": [PGP_KEY]}]


def _age_for_someone_else_and_pgp(s: Any) -> None:
    s["age"][0]["enc"] = s["other_enc"]
    s["pgp"] = [PGP_KEY]


def _comment_regex(s: Any) -> None:
    s["encrypted_comment_regex"] = "sops:enc"


def _unknown_field(s: Any) -> None:
    s["future_feature"] = True


def _two_rules(s: Any) -> None:
    s["unencrypted_suffix"] = "_plain"


def _old_version(s: Any) -> None:
    s["version"] = "2.0.0"


def _odd_lastmodified(s: Any) -> None:
    s["lastmodified"] = "Mon, 01 Jan 2024 00:00:00 GMT"


def _lookahead_regex(s: Any) -> None:
    s["encrypted_regex"] = "^(?=token)"


@pytest.mark.parametrize(
    "change",
    [
        _pgp_only,
        _shamir,
        _pgp_key_group_only,
        _age_for_someone_else_and_pgp,
        _comment_regex,
        _unknown_field,
        _two_rules,
        _old_version,
        _odd_lastmodified,
        _lookahead_regex,
    ],
)
def test_metadata_the_reader_does_not_implement_is_unsupported(
    change: Callable[[Any], None],
    sops_encrypt: Callable[..., str],
    age_key: AgeKeyPair,
    other_age_key: AgeKeyPair,
) -> None:
    doc = load(sops_encrypt(BASE_TREE, "--encrypted-regex", SECRET_REGEX))
    other = load(sops_encrypt(BASE_TREE, recipient=other_age_key.recipient))
    doc["sops"]["other_enc"] = other["sops"]["age"][0]["enc"]
    change(doc["sops"])
    del doc["sops"]["other_enc"]
    with pytest.raises(SopsUnsupported):
        decrypt_document(doc, [age_key.identity])


@pytest.mark.parametrize(
    ("tree", "args"),
    [
        pytest.param({"since": "2024-01-01", "d": None}, [], id="timestamp"),
        pytest.param(
            {"token": "x", "ключ": "v"}, ["--encrypted-regex", "^token$"], id="non-ascii-key-with-regex"
        ),
    ],
)
def test_values_the_reader_does_not_implement_are_unsupported(
    tree: dict[str, Any],
    args: list[str],
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    plain = copy.deepcopy(tree)
    if "since" in plain:
        plain["since"] = load("d: 2024-01-01")["d"]  # a YAML date, which sops keeps as a time
    text = sops_encrypt(plain, *args)
    assert sops_decrypt(text).returncode == 0
    with pytest.raises(SopsUnsupported):
        decrypt_document(load(text), [age_key.identity])


def test_a_yaml_merge_key_is_unsupported(sops_encrypt: Callable[..., str], age_key: AgeKeyPair) -> None:
    text = sops_encrypt({"slug": "acme", "token": "t"}, "--encrypted-regex", "^token$")
    doc = load("base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n" + text)
    with pytest.raises(SopsUnsupported, match="merge"):
        decrypt_document(doc, [age_key.identity])


def test_a_document_without_metadata_is_unsupported(age_key: AgeKeyPair) -> None:
    with pytest.raises(SopsUnsupported):
        decrypt_document({"slug": "acme"}, [age_key.identity])


# --- identities ---------------------------------------------------------------------------------


def test_parse_identities_reads_key_files_and_the_environment_variable(
    age_key: AgeKeyPair, other_age_key: AgeKeyPair
) -> None:
    text = (
        "# created: 2024-01-01T00:00:00Z\r\n# public key: age1...\r\n"
        f"{age_key.secret_key}\r\n\n   \n"
        "AGE-PLUGIN-YUBIKEY-1QQQQQQ\n"
        f"  {other_age_key.secret_key}  \n"
    )
    parsed = parse_identities(text)
    assert [str(i.to_public()) for i in parsed] == [age_key.recipient, other_age_key.recipient]
    assert parse_identities("") == [] and parse_identities("# only a comment\n") == []


@pytest.mark.parametrize("bad", ["not-a-key", "AGE-SECRET-KEY-1TRUNCATED"])
def test_a_malformed_identity_line_is_reported_by_number_only(bad: str, age_key: AgeKeyPair) -> None:
    with pytest.raises(SopsInvalidIdentity, match="line 2") as caught:
        parse_identities(f"{age_key.secret_key}\n{bad}\n")
    assert bad not in str(caught.value) and age_key.secret_key not in str(caught.value)
    assert isinstance(caught.value, SopsError)


def test_the_error_tree_lets_callers_tell_fallback_from_tampering() -> None:
    assert issubclass(SopsUnsupported, SopsError) and issubclass(SopsMacMismatch, SopsError)
    assert not issubclass(SopsMacMismatch, SopsUnsupported)
    assert not issubclass(SopsNoMatchingKey, SopsUnsupported | SopsMacMismatch)


def test_a_plaintext_value_that_looks_encrypted_stays_as_it_is(
    sops_encrypt: Callable[..., str],
    sops_decrypt: Callable[..., BinaryResult],
    age_key: AgeKeyPair,
) -> None:
    # Only the file's rule says what is encrypted, never the look of a value.
    lookalike = "ENC[AES256_GCM,data:eA==,iv:eQ==,tag:eg==,type:str]"
    text = sops_encrypt({"note": lookalike, "token": "t"}, "--encrypted-regex", "^token$")
    binary = sops_decrypt(text)
    assert binary.returncode == 0, binary.stderr
    assert (
        decrypt_document(load(text), [age_key.identity]) == binary.data == {"note": lookalike, "token": "t"}
    )
