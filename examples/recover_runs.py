"""Retry every run of an automation that failed with one error code, after fixing its cause.

    python examples/recover_runs.py http://127.0.0.1:8000 $KEY <automation id> \
        template_not_published

It counts the runs first (a dry run), asks before going on, starts the bulk retry with an
idempotency key (running the script twice retries nothing twice) and follows it to the end.
Only httpx is needed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx


def recover(api: httpx.Client, automation_id: str, error_code: str) -> dict[str, Any]:
    path = f"/automations/{automation_id}/runs/retry"
    preview = api.post(path, json={"error_code": error_code, "dry_run": True})
    preview.raise_for_status()
    matched = preview.json()["matched"]
    if matched == 0 or input(f"Retry {matched} failed runs? [y/N] ").strip().lower() != "y":
        return preview.json()
    started = api.post(
        path,
        json={"error_code": error_code},
        headers={"Idempotency-Key": f"recover-{automation_id}-{error_code}"},
    )
    started.raise_for_status()
    bulk: dict[str, Any] = started.json()
    while bulk["status"] != "completed":
        time.sleep(1)
        answer = api.get(f"/automations/{automation_id}/runs/retries/{bulk['id']}")
        answer.raise_for_status()
        bulk = answer.json()
        print(f"done {bulk['done']} of {bulk['matched']}", end="\r", flush=True)
    return bulk


def main(base_url: str, key: str, automation_id: str, error_code: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as api:
        bulk = recover(api, automation_id, error_code)
    print(
        f"\nmatched {bulk['matched']}, done {bulk.get('done', 0)}, "
        f"skipped {bulk.get('skipped', 0)}, failed {bulk.get('failed', 0)}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:5])
