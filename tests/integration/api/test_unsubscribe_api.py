"""The public unsubscribe link, attacked: a forged, tampered, swapped or foreign token is 404 and
changes nothing; the real one works once and again; a deleted contact's link is dead."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from engine.unsubscribe import make_token
from tests.integration.harness import ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def unsubscribed(api: httpx.Client, contact_id: str) -> bool:
    return bool(api.get(f"/contacts/{contact_id}").json()["unsubscribed"])


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encoded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_only_the_contacts_own_signed_token_unsubscribes_it(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    secret = rt_stack.settings.secret_key.get_secret_value()
    ann = api.post("/contacts", json={"email": "ann@example.test"}).json()["id"]
    bob = api.post("/contacts", json={"email": "bob@example.test"}).json()["id"]
    ann_token, bob_token = make_token(uuid.UUID(ann), secret), make_token(uuid.UUID(bob), secret)
    flipped = bytearray(raw(ann_token))
    flipped[-1] ^= 1
    forged = [
        encoded(uuid.UUID(ann).bytes + bytes(16)),  # no signature
        encoded(bytes(flipped)),  # the signature tampered with
        encoded(uuid.UUID(ann).bytes + raw(bob_token)[16:]),  # another contact's signature
        make_token(uuid.UUID(ann), "another deployment's secret key, 32+ bytes"),
        ann_token[:-2],  # cut short
        ann_token + "AAAA",  # too long
        "not-a-token",
        "%00" * 8,
    ]
    with httpx.Client(base_url=api_server.base_url, timeout=10) as public:
        for token in forged:
            for method in ("GET", "POST"):
                answer = public.request(method, f"/unsubscribe/{token}")
                assert answer.status_code == 404, (method, token, answer.text)
                assert "ann@example.test" not in answer.text
        assert not unsubscribed(api, ann) and not unsubscribed(api, bob)
        page = public.get(f"/unsubscribe/{ann_token}")
        assert page.status_code == 200 and "ann@example.test" in page.text
        assert not unsubscribed(api, ann)  # looking is not unsubscribing
        for _ in range(2):  # a mail client's retry of the one-click POST
            assert public.post(f"/unsubscribe/{ann_token}").status_code == 200
        assert unsubscribed(api, ann) and not unsubscribed(api, bob)
        assert api.delete(f"/contacts/{bob}").status_code == 200
        for method in ("GET", "POST"):
            assert public.request(method, f"/unsubscribe/{bob_token}").status_code == 404
