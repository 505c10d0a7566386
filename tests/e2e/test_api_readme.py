"""The README's "Subscription API" examples run as written: every ```sh
block of that section is executed by bash against a real hookd-ingest,
with $HOOKD, $TOKEN, $DIRECTORY_TOKEN, $WEBHOOK_ID, $HOOK_ID and
$DELIVERY_ID set to fresh objects and https://example.com pointed at a
local receiver. Every curl must get a 2xx answer with a JSON (or empty)
body."""

import json
import os
import pathlib
import re
import subprocess

from api_helpers import api  # noqa: F401
from api_helpers import seed_delivery
from harness import INGEST_BIN, SOURCE_DIR, service_env

CURL_WRAPPER = 'curl() { command curl --silent --show-error --fail-with-body "$@"; echo; }\n'


def section(text, title):
    start = text.index("\n## " + title + "\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def sh_blocks():
    text = (pathlib.Path(SOURCE_DIR) / "README.md").read_text()
    return re.findall(r"^```sh\n(.*?)^```", section(text, "Subscription API"), re.S | re.M)


def test_readme_curl_examples_run(api, receiver):
    blocks = sh_blocks()
    curl_blocks = [b for b in blocks if "curl " in b]
    assert len(curl_blocks) >= 12, "the Subscription API section lost its examples"
    documented = "\n".join(curl_blocks)
    for path in ("/v1/subscriptions/standard/subscribe", "/v1/subscriptions/standard/unsubscribe", '"$HOOKD/hooks"',
                 "/hooks/$HOOK_ID", '"$HOOKD/v1/webhooks"', "/v1/webhooks?", "/v1/webhooks/$WEBHOOK_ID\"",
                 "/rotate-secret", "/deliveries", "/redeliver", '"$HOOKD/v1/endpoints"', "/v1/endpoints/release",
                 "/v1/event-types"):
        assert path in documented, f"no README example for {path}"

    base = receiver.url("").rstrip("/")
    for block in blocks:
        token = api.token("account:acct_42", "readme")
        directory_token = api.token("directory:dir_7", "readme")
        c = api.client("account:acct_42")
        status, w = c.post("/v1/webhooks", {"event_types": ["appointment/created"], "target_url": receiver.url("/hooks")})
        assert status == 201
        status, hook = c.post("/hooks", {"action": "event.created", "target_url": receiver.url("/hooks/vyte")})
        assert status == 201
        did = seed_delivery(api.db, w["id"])
        env = service_env({
            "HOOKD": api.base.rstrip("/"), "TOKEN": token, "DIRECTORY_TOKEN": directory_token,
            "WEBHOOK_ID": w["id"], "HOOK_ID": hook["_id"], "DELIVERY_ID": did,
            "HOOKD_DATABASE_URL": api.db.url, "HOOKD_LOG_FORMAT": "text",
            "PATH": str(pathlib.Path(INGEST_BIN).parent) + os.pathsep + os.environ["PATH"],
        })
        script = "set -euo pipefail\n" + CURL_WRAPPER + block.replace("https://example.com", base)
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"README example failed (exit {out.returncode}):\n{block}\n{out.stdout}\n{out.stderr}"
        for line in out.stdout.splitlines():
            if line.strip():
                json.loads(line)

    # the examples did what they say
    assert api.db.scalar("SELECT count(*) FROM api_tokens WHERE name = 'CRM integration'") == 1
    rows = api.db.query("SELECT owner_kind, event_types, target_url FROM subscriptions WHERE source = 'vcita'"
                        " ORDER BY owner_kind")
    assert rows == [{"owner_kind": "directory", "event_types": ["pivot/update"],
                     "target_url": base + "/hooks/pivot"}]  # the account one was unsubscribed again
    created = api.db.query("SELECT * FROM subscriptions WHERE name = 'Bookings to CRM'")
    assert len(created) == 1 and created[0]["metadata"] == {"crm_id": 17}
    assert api.db.scalar("SELECT count(*) FROM parked_jobs WHERE reason = 'retry'") >= 1
