"""One mailbox per value: the address validator every door uses."""

from __future__ import annotations

import email.policy
import re
import string
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ingest
from engine.addresses import (
    _SPACE,
    MAX_ADDRESS,
    AddressError,
    Mailbox,
    _split_named,
    canonical_email,
    check_address,
    check_mailbox,
    parse_address,
    parse_mailbox,
)
from engine.errors import InvalidInput
from engine.headers import ENCODED_WORD
from engine.ingest import EventRequest
from engine.json_limits import JsonLimits
from engine.store.events import EventRoute

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("x@a-b.example", "x@a-b.example"),
        ("ada@bücher.example", "ada@xn--bcher-kva.example"),
        ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
        ("ada@例え.テスト", "ada@xn--r8jz45g.xn--zckzah"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ],
)
def test_accepted_addresses_and_their_canonical_form(value: str, canonical: str) -> None:
    assert canonical_email(value) == canonical
    assert canonical_email(canonical) == canonical


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("a@example.com, attacker@evil.test", "not a list"),
        ("a@example.com;attacker@evil.test", "not a list"),
        ("@b.com", "needs a name before the @"),
        ("a b@example.com", "must not contain spaces"),
        ("a@example.com\r\nBcc: attacker@evil.test", "line breaks"),
        ("a@example.com\n", "line breaks"),
        ("a@exam\x00ple.com", "control characters"),
        ("a@exam\u2028ple.com", "control characters"),
        ("=?utf-8?q?eve=40evil.test?=@example.com", "encoded word"),
        ("Ada <ada@example.com>", "without display name"),
        ("<ada@example.com>", "without display name"),
        ("ada@example.com (Ada)", "without display name, quotes or comments"),
        ("ada @example.com", "must not contain spaces"),
        ('"ada"@example.com', "without display name"),
        ("ada", "exactly one @"),
        ("a@b@example.com", "exactly one @"),
        ("ada@", "needs a domain"),
        ("ada@localhost", "two labels or more"),
        ("ada@-example.com", "inner hyphens"),
        ("ada@exa_mple.com", "two labels or more"),
        ("ada@example..com", "two labels or more"),
        ("ada@example.com.", "two labels or more"),
        ("ada@[192.0.2.1]", "not an address literal"),
        ("ada@192.0.2.1", "not an IP address"),
        (".ada@example.com", "single dots"),
        ("ada.@example.com", "single dots"),
        ("a..da@example.com", "single dots"),
        ("adä@example.com", "ASCII name"),
        ("a" * 65 + "@example.com", "at most 64 characters before the @"),
        ("a@" + ".".join(["b" * 63] * 4) + ".com", "at most 253 characters after the @"),
        ("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com", f"at most {MAX_ADDRESS} characters"),
        ("ada@a" + "b" * 63 + ".com", "each 1 to 63 characters"),
        ("", "empty value"),
        (3, "got int"),
        (None, "got NoneType"),
    ],
)
def test_refused_addresses_say_which_rule(value: object, rule: str) -> None:
    with pytest.raises(AddressError) as refused:
        canonical_email(value)
    assert rule in refused.value.rule


def test_check_address_names_the_field_the_rule_and_the_value() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_address("a@example.com, attacker@evil.test", field="email")
    assert refused.value.field == "email"
    assert refused.value.message == (
        "`email` must be exactly one address, not a list: one contact, one address;"
        " got 'a@example.com, attacker@evil.test'"
    )
    with pytest.raises(InvalidInput) as long_value:
        check_address("x" * 300, field="events[3].email")
    assert long_value.value.field == "events[3].email"
    assert len(long_value.value.message) < 200


@pytest.mark.parametrize(
    ("value", "mailbox"),
    [
        ("hi@example.com", Mailbox(None, "hi@example.com")),
        ("Acme <hi@example.com>", Mailbox("Acme", "hi@example.com")),
        ("  Acme Inc. <Hi@Example.com> ", Mailbox("Acme Inc.", "Hi@example.com")),
        ('"Acme, Inc." <hi@example.com>', Mailbox('"Acme, Inc."', "hi@example.com")),
        ("Zoë Café <zoe@bücher.example>", Mailbox("Zoë Café", "zoe@xn--bcher-kva.example")),
        ("<hi@example.com>", Mailbox(None, "hi@example.com")),
        ('".Acme" <hi@example.com>', Mailbox('".Acme"', "hi@example.com")),
        ("J. R. Doe <hi@example.com>", Mailbox("J. R. Doe", "hi@example.com")),
    ],
)
def test_senders_may_carry_a_display_name(value: str, mailbox: Mailbox) -> None:
    assert parse_mailbox(value) == mailbox
    assert parse_mailbox(str(mailbox)) == mailbox


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("Acme <hi@example.com>, Evil <x@evil.test>", "not a list"),
        ("hi@example.com, x@evil.test", "not a list"),
        ("Acme <hi@example.com>\r\nBcc: x@evil.test", "line breaks"),
        ("Acme\n <hi@example.com>", "line breaks"),
        ("Acme, Inc. <hi@example.com>", "put it in double quotes"),
        ("x@evil.test <hi@example.com>", "put it in double quotes"),
        ('"Ac"me" <hi@example.com>', "quoted display name"),
        ("Acme <hi@example.com> extra", "one <address> at the end"),
        ("Acme <hi@example.com", "one <address> at the end"),
        ("Acme <hi>", "exactly one @"),
        ("Acme <hi@localhost>", "two labels"),
        ("=?utf-8?q?x@evil.test=2C_Acme?= <hi@example.com>", "encoded word"),
        (".Acme <hi@example.com>", "starts with a dot"),
        (" . <hi@example.com>", "starts with a dot"),
        ('"=?utf-8?q?x=0D=0ABcc:_y@evil.test?=" <hi@example.com>', "encoded word"),
        (["hi@example.com"], "got list"),
    ],
)
def test_refused_senders(value: object, rule: str) -> None:
    with pytest.raises(AddressError) as refused:
        parse_mailbox(value)
    assert rule in refused.value.rule
    with pytest.raises(InvalidInput) as invalid:
        check_mailbox(value, field="steps[1].config.from", label="from")
    assert invalid.value.field == "steps[1].config.from"
    assert invalid.value.message.startswith("`from` ")


def test_sender_keeps_the_case_of_its_name_but_a_contact_is_lower_case() -> None:
    assert parse_address("Hi@Example.COM") == "Hi@example.com"
    assert canonical_email("Hi@Example.COM") == "hi@example.com"


# -- properties ------------------------------------------------------------------------------

# Dot-atoms, but for the rare one shaped like an encoded word (`=?x?q??=`), refused on purpose.
local_parts = (
    st.lists(st.text(ATEXT, min_size=1, max_size=10), min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda local: ENCODED_WORD.search(local) is None)
)
labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.tuples(
    st.lists(labels, min_size=1, max_size=3), st.from_regex(r"[a-z]{2,6}", fullmatch=True)
).map(lambda parts: ".".join([*parts[0], parts[1]]))
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)


@given(addresses)
def test_every_dot_atom_address_is_accepted_and_canonical_is_stable(address: str) -> None:
    canonical = canonical_email(address)
    assert canonical == address.lower()
    assert canonical_email(canonical) == canonical
    assert canonical_email(f"  {address.upper()} ") == canonical


@given(addresses, addresses, st.sampled_from([",", ", ", ";", " ", "\r\n", "\n", "\t", "\x00"]))
def test_two_addresses_are_never_one(first: str, second: str, separator: str) -> None:
    with pytest.raises(AddressError):
        canonical_email(f"{first}{separator}{second}")
    with pytest.raises(AddressError):
        parse_mailbox(f"{first}{separator}{second}")


@given(st.text(max_size=60))
def test_any_text_is_either_refused_or_one_clean_address(value: str) -> None:
    try:
        address = canonical_email(value)
    except AddressError:
        return
    local, _, domain = address.partition("@")
    assert address.count("@") == 1 and local and domain
    assert address.isascii() and address.isprintable() and " " not in address
    assert not set(address) & set(',;<>()"[]\\')


names = st.lists(
    st.sampled_from([*'ab .,:;<>@"\\()_é漢!#', "=?utf-8?q?", "?=", "=0A", "=2C", "x@y.test"]),
    max_size=12,
).map("".join)


@given(names)
def test_every_sender_accepted_is_one_mailbox_to_the_email_library(name: str) -> None:
    """What the transport's header parser reads from an accepted sender: the same one address
    (not a crash, not a second address decoded from an encoded word)."""
    try:
        mailbox = parse_mailbox(f"{name} <hi@example.com>")
    except AddressError:
        return
    header = email.policy.default.header_factory("From", str(mailbox))
    assert [address.addr_spec for address in header.addresses] == ["hi@example.com"]


# The pattern that split `Name <address>` before, in quadratic time.
_QUADRATIC = re.compile(r"(?P<name>.*?)\s*<(?P<address>[^<>]*)>")


@given(st.text(alphabet=' \ta<>"@.', max_size=30))
def test_a_named_sender_is_split_as_before(text: str) -> None:
    old = _QUADRATIC.fullmatch(text)
    assert _split_named(text) == (None if old is None else (old["name"], old["address"]))


@pytest.mark.parametrize("value", ["a" + " " * 40_000 + "<", "a" + " " * 40_000 + "<x@y.test"])
def test_a_long_sender_is_refused_in_linear_time(value: str) -> None:
    started = time.perf_counter()
    with pytest.raises(AddressError):
        parse_mailbox(value)
    assert time.perf_counter() - started < 0.2


def test_the_space_rule_is_str_isspace_for_every_character() -> None:
    characters = map(chr, range(sys.maxunicode + 1))
    assert [c for c in characters if bool(_SPACE.match(c)) != c.isspace()] == []


def test_a_batch_parses_each_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def counted(value: object, *, field: str) -> str:
        calls.append(value)
        return check_address(value, field=field)

    monkeypatch.setattr(ingest, "check_address", counted)
    requests = [EventRequest("user.created", email=f"User{n}@Example.COM") for n in range(5)]
    addresses: dict[str, str] = {}
    assert ingest._contacts_of(requests, addresses) is not None
    routes = {"user.created": EventRoute()}
    pending = ingest._check_all(requests, routes, JsonLimits(), addresses)
    assert [item.email for item in pending] == [f"user{n}@example.com" for n in range(5)]
    assert len(calls) == 5
