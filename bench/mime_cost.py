"""What an email's MIME costs the worker: `to_mime` and the flatten smtplib does, per email.

    python -m bench.mime_cost [--emails 3000] [--repeat 3]

Every send renders its email as an RFC 5322 message (engine/mail/message.py) and smtplib
flattens it to bytes before its MAIL FROM. This times both, in one process, for a set of
emails that differ as a campaign's do (recipient, subject, body, the unsubscribe link; some
names non-ASCII), two ways in alternating turns:

- ours: the module's policy, whose header registry keeps its classes and the parsed and folded
  sender and MIME headers, with the parts' fixed boundary;
- library: the same policy on the library's own `HeaderRegistry` (a class built per header,
  every value parsed anew), the boundary drawn at each flatten as the generator does.

Prints µs of CPU per email for each, the best turn of each way, and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.generator import BytesGenerator

from engine.mail import message as message_module
from engine.mail.message import OutgoingEmail, to_mime

NAMES = ("Ada", "Grace", "Émilie", "Linus", "Zoë", "Ken")


def emails(count: int) -> list[OutgoingEmail]:
    made = []
    for index in range(count):
        name = NAMES[index % len(NAMES)]
        made.append(
            OutgoingEmail(
                email_id=f"0190a8e4-1111-7000-8000-{index:012d}",
                idempotency_key=f"key-{index}",
                sender="Acme <hello@acme.test>",
                to=(f"user{index}@example.test",),
                subject=f"Welcome, {name}",
                html=f"<p>Hello {name}, welcome to Acme.</p>" * 3,
                text=f"Hello {name}, welcome to Acme.",
                unsubscribe_url=f"https://acme.test/unsubscribe/{index:032d}",
            )
        )
    return made


@contextmanager
def library_registry() -> Iterator[None]:
    """The module's policy on the library's own header registry, and no fixed boundary."""
    saved = message_module.POLICY, message_module.ALTERNATIVE_BOUNDARY
    message_module.POLICY = message_module._WirePolicy(cte_type="7bit")
    # The empty string is in every body: the module never fixes the boundary, the generator
    # draws one.
    message_module.ALTERNATIVE_BOUNDARY = ""
    try:
        yield
    finally:
        message_module.POLICY, message_module.ALTERNATIVE_BOUNDARY = saved


def turn(batch: list[OutgoingEmail]) -> float:
    """µs of CPU per email: render it and flatten it as smtplib's send_message does."""
    started = time.process_time()
    for email in batch:
        out = io.BytesIO()
        BytesGenerator(out).flatten(to_mime(email), linesep="\r\n")
    return (time.process_time() - started) / len(batch) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=3000, help="emails per turn")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each way")
    args = parser.parse_args(argv)
    batch = emails(args.emails)
    turn(batch[:200])  # imports and first-use caches, both ways
    with library_registry():
        turn(batch[:200])
    ours: list[float] = []
    library: list[float] = []
    for _ in range(args.repeat):
        ours.append(turn(batch))
        with library_registry():
            library.append(turn(batch))
    best_ours, best_library = min(ours), min(library)
    report = {
        "emails_per_turn": args.emails,
        "ours_us_per_email": round(best_ours, 1),
        "library_us_per_email": round(best_library, 1),
        "ratio": round(best_ours / best_library, 3),
        "turns": {"ours": [round(t, 1) for t in ours], "library": [round(t, 1) for t in library]},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
