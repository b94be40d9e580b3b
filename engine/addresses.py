"""Email addresses: one mailbox per value, RFC 5321 syntax, checked alike wherever one enters.

A recipient (a contact's email) is a bare address: `name@example.com`. A sender (`from`,
`reply_to`) may carry a display name: `Acme <hi@example.com>`. Either way a value holds exactly
one mailbox: no lists, no comments, no line breaks. The local part is an RFC 5321 dot-atom in
ASCII (no quoted strings, no SMTPUTF8); the domain is a host name of two labels or more, an
internationalised one converted to its ASCII form (`bücher.example` -> `xn--bcher-kva.example`),
never an address literal. See docs/input-limits.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

from engine.errors import InvalidInput
from engine.headers import CONTROL, ENCODED_WORD

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 253  # RFC 1035, written without the final dot
MAX_ADDRESS = 254  # RFC 5321's 256-octet path, less its angle brackets
MAX_SENDER = 320  # a sender with its display name, as templates and outbox rows store it

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 5322 specials that would make a display name parse as something else (a list, a group).
_PHRASE_SPECIALS = set('()<>[]:;@\\,"')
_QUOTED = re.compile(r'"[^"]*"')
# What str.isspace() calls a space: `\s` of a str pattern is the same test, per character.
_SPACE = re.compile(r"\s")
_LIST_SEPARATOR = re.compile("[,;]")
_DECORATION = re.compile('[<>()"]')

RULE_ONE_ADDRESS = "must be one email address like name@example.com"
RULE_NO_ENCODED_WORD = (
    "must not contain an RFC 2047 encoded word like =?utf-8?q?...?=, which mail software"
    " decodes into other text (a comma and another address, a line break)"
)


class AddressError(ValueError):
    """A value is not one valid address; `rule` says which rule it breaks, in words."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class Mailbox:
    """A sender: an optional display name and one address."""

    name: str | None
    address: str

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


def parse_address(value: object) -> str:
    """The bare address with its domain in canonical form (lower case, ASCII); AddressError."""
    if not isinstance(value, str):
        raise AddressError(f"{RULE_ONE_ADDRESS}, got {type(value).__name__}")
    if CONTROL.search(value):
        raise AddressError("must not contain line breaks or other control characters")
    if ENCODED_WORD.search(value):
        raise AddressError(RULE_NO_ENCODED_WORD)
    text = value.strip()
    if not text:
        raise AddressError(f"{RULE_ONE_ADDRESS}, got an empty value")
    if _LIST_SEPARATOR.search(text):
        raise AddressError("must be exactly one address, not a list: one contact, one address")
    if _DECORATION.search(text):
        raise AddressError(
            "must be a bare address like name@example.com, without display name, quotes or comments"
        )
    if _SPACE.search(text):
        raise AddressError("must not contain spaces")
    local, at, domain = text.rpartition("@")
    if not at or "@" in local:
        raise AddressError(f"{RULE_ONE_ADDRESS}, with exactly one @")
    address = f"{_local_part(local)}@{_domain(domain)}"
    if len(address) > MAX_ADDRESS:
        raise AddressError(f"must be at most {MAX_ADDRESS} characters long")
    return address


def _local_part(local: str) -> str:
    if not local:
        raise AddressError("needs a name before the @")
    if not local.isascii():
        raise AddressError(
            "must have an ASCII name before the @ (internationalised names are not accepted)"
        )
    if len(local) > MAX_LOCAL_PART:
        raise AddressError(f"must have at most {MAX_LOCAL_PART} characters before the @")
    if not _DOT_ATOM.fullmatch(local):
        raise AddressError(
            "must have before the @ only letters, digits and !#$%&'*+/=?^_`{|}~-, "
            "with single dots between them (not first or last)"
        )
    return local


def _domain(domain: str) -> str:
    if not domain:
        raise AddressError("needs a domain after the @")
    if domain.startswith("["):
        raise AddressError(
            "must have a domain name after the @, not an address literal like [192.0.2.1]"
        )
    host = domain.lower()
    if not host.isascii():
        try:
            host = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            # The rule names no part of the address: the message quotes it after the rule.
            rule = "has a domain that is not a valid internationalised domain name"
            raise AddressError(rule) from None
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError(
            "must have a domain like example.com after the @: two labels or more of letters, "
            "digits and inner hyphens, each 1 to 63 characters"
        )
    if labels[-1].isdigit():
        raise AddressError("must have a domain name after the @, not an IP address")
    if len(host) > MAX_DOMAIN:
        raise AddressError(f"must have at most {MAX_DOMAIN} characters after the @")
    return host


def canonical_email(value: object) -> str:
    """A contact's address as stored and compared: `parse_address`, all in lower case."""
    return parse_address(value).lower()


def parse_mailbox(value: object) -> Mailbox:
    """A sender, `addr@domain` or `Name <addr@domain>` (a quoted name may hold , and ;)."""
    if not isinstance(value, str):
        raise AddressError(
            "must be one email address, name@example.com or Name <name@example.com>,"
            f" got {type(value).__name__}"
        )
    if CONTROL.search(value):
        raise AddressError("must not contain line breaks or other control characters")
    if ENCODED_WORD.search(value):
        raise AddressError(RULE_NO_ENCODED_WORD)
    text = value.strip()
    unquoted = _QUOTED.sub('""', text)
    if unquoted.count("@") > 1 and any(char in unquoted for char in ",;"):
        raise AddressError("must be exactly one address, not a list")
    named = _split_named(text)
    if named is None:
        if "<" in text or ">" in text:
            raise AddressError('must be "Name <name@example.com>": one <address> at the end')
        return Mailbox(None, parse_address(text))
    return Mailbox(_display_name(named[0]), parse_address(named[1]))


def _split_named(text: str) -> tuple[str, str] | None:
    """`Name <address>` as (name, address), None without one <address> at the end. Split at
    the last `<`, in linear time: a regular expression's lazy name and the spaces before `<`
    took a second for a value of 40,000 spaces, which a step's `from` may be before its length
    is checked."""
    if not text.endswith(">"):
        return None
    head, bracket, rest = text.rpartition("<")
    address = rest[:-1]
    if not bracket or ">" in address:
        return None
    return head.rstrip(), address


def _display_name(name: str) -> str | None:
    if not name:
        return None
    if len(name) >= 2 and name[0] == name[-1] == '"':
        if '"' in name[1:-1] or "\\" in name[1:-1]:
            raise AddressError('has a quoted display name that holds " or \\')
        return name
    if any(char in _PHRASE_SPECIALS for char in name):
        raise AddressError(
            'has a display name with one of ( ) < > [ ] : ; @ \\ , ": put it in double quotes, '
            'e.g. "Acme, Inc." <hi@example.com>'
        )
    if name.startswith("."):
        # Python's address parser fails on it (AttributeError), as the transport sends.
        raise AddressError(
            'has a display name that starts with a dot: put it in double quotes, e.g. ".Acme" '
            "<hi@example.com>"
        )
    return name


def check_address(value: object, *, field: str, label: str | None = None) -> str:
    """`canonical_email`, or InvalidInput naming the field (or `label`) and the rule."""
    try:
        return canonical_email(value)
    except AddressError as error:
        raise _invalid(value, error, field, label) from None


def check_mailbox(value: object, *, field: str, label: str | None = None) -> Mailbox:
    """`parse_mailbox`, or InvalidInput naming the field (or `label`) and the rule."""
    try:
        return parse_mailbox(value)
    except AddressError as error:
        raise _invalid(value, error, field, label) from None


def _invalid(value: object, error: AddressError, field: str, label: str | None) -> InvalidInput:
    shown = repr(value) if isinstance(value, str) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:79] + "…"
    return InvalidInput(f"`{label or field}` {error.rule}", field=field, given=shown)
