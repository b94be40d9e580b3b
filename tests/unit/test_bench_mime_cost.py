"""bench.mime_cost times the same emails both ways, and leaves the module as it found it."""

from __future__ import annotations

import io
import json
from email.generator import BytesGenerator

import pytest

from bench import mime_cost
from engine.mail import message as message_module


def test_the_library_way_is_measured_and_undone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy, boundary = message_module.POLICY, message_module.ALTERNATIVE_BOUNDARY
    assert mime_cost.main(["--emails", "20", "--repeat", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ours_us_per_email"] > 0 and report["library_us_per_email"] > 0
    assert (policy, boundary) == (message_module.POLICY, message_module.ALTERNATIVE_BOUNDARY)

    def flat(email: message_module.OutgoingEmail) -> bytes:
        out = io.BytesIO()
        BytesGenerator(out).flatten(message_module.to_mime(email), linesep="\r\n")
        return out.getvalue().split(b"\r\n--")[0]  # headers and preamble, before the parts

    [email] = mime_cost.emails(1)
    ours = flat(email)
    with mime_cost.library_registry():
        library = flat(email)
    # The library's way is the library's own: its boundary drawn, not the module's.
    assert boundary.encode() in ours and boundary.encode() not in library
    assert b"boundary=" in library
