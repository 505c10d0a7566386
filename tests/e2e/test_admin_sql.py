"""Every ```sql block of README.md runs, with psql, against a database
migrated by the real hookd-ingest and seeded with the example values the
recipes use (acct_42, subscription 65f0c0ffee00000000000001,
https://crm.example.com/hooks, ...). Each block starts from the same seed.
A recipe added to the README later runs here automatically; if it needs
other rows, add them to SEED."""

import json
import pathlib
import re
import subprocess

from harness import SOURCE_DIR

SUB_ID = "65f0c0ffee00000000000001"
URL = "https://crm.example.com/hooks"

RESET = """
TRUNCATE subscriptions, endpoints, parked_jobs, deliveries, finished_jobs, api_tokens;
DELETE FROM event_types WHERE source = 'custom';
"""

SEED = """
INSERT INTO api_tokens (token_hash, scope, name) VALUES
    (encode(sha256('hkd_0123456789abcdef0123456789abcdef0123456789abcdef'::bytea), 'hex'), 'account:acct_42', 'CRM integration'),
    (repeat('b', 64), 'directory:dir_7', 'directory admin');
INSERT INTO subscriptions (id, owner_kind, owner_id, name, event_types, target_url, statuses, source) VALUES
    ('65f0c0ffee00000000000001', 'account', 'acct_42', 'Bookings to CRM', ARRAY['appointment/created'],
     'https://crm.example.com/hooks', ARRAY['confirmed'], 'native'),
    ('65f0c0ffee00000000000002', 'account', 'acct_42', 'Payments', ARRAY['payment/*'],
     'https://crm.example.com/hooks', NULL, 'vcita'),
    ('65f0c0ffee00000000000003', 'account', 'acct_7', 'Other', ARRAY['*'],
     'https://crm.example.com/hooks', NULL, 'sql'),
    ('65f0c0ffee00000000000004', 'directory', 'dir_7', 'Pivot', ARRAY['pivot/update'],
     'https://dir.example.com/hooks', NULL, 'native');
UPDATE subscriptions SET active = false, deactivated_reason = 'gone: 410 from receiver'
    WHERE id = '65f0c0ffee00000000000004';
UPDATE endpoints SET consecutive_failures = 5, greylist_level = 2, greylisted_until = now() + interval '2 minutes',
       last_failure_at = now(), last_failure_class = 'http_5xx', last_status_code = 503, last_error = 'HTTP 503'
    WHERE url = 'https://crm.example.com/hooks';
INSERT INTO parked_jobs (job_id, endpoint_id, subscription_id, reason, not_before, job, expires_at)
SELECT md5('parked' || s.id || g)::uuid, s.endpoint_id, s.id, CASE WHEN g % 2 = 0 THEN 'greylist' ELSE 'retry' END,
       now() + interval '2 minutes', '{}', now() + interval '72 hours'
FROM subscriptions s CROSS JOIN generate_series(1, 3) g WHERE s.id IN ('65f0c0ffee00000000000001',
     '65f0c0ffee00000000000003');
INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id, event_type, attempt,
                        outcome, error_class, status_code, latency_ms, response_excerpt, job, created_at)
SELECT md5('job' || g)::uuid, md5('job' || g), s.id, s.endpoint_id, 'evt_' || g, 'appointment/created', g,
       CASE WHEN g % 3 = 0 THEN 'success' ELSE 'failure' END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'http_5xx' END, CASE WHEN g % 3 = 0 THEN 200 ELSE 503 END, 10 * g,
       'Service Unavailable',
       CASE WHEN g % 3 = 0 THEN NULL ELSE json_build_object('v', 1, 'id', md5('job' || g), 'event_id', 'evt_' || g,
            'subscription_id', s.id, 'endpoint_id', s.endpoint_id, 'type', 'appointment/created',
            'account', 'acct_42', 'occurred_at', '2026-11-23T10:00:00Z', 'payload', json_build_object('id', g))::text END,
       now() - (g || ' minutes')::interval
FROM subscriptions s CROSS JOIN generate_series(1, 6) g WHERE s.id = '65f0c0ffee00000000000001';
INSERT INTO finished_jobs (job_id, state, subscription_id) VALUES (md5('job3')::uuid, 'delivered', '65f0c0ffee00000000000001');
-- a successful batched request: one row for three jobs, written with their finished_jobs rows
INSERT INTO finished_jobs (job_id, state, subscription_id)
SELECT j, 'delivered', '65f0c0ffee00000000000001'
FROM unnest(ARRAY['0123456789abcdef0123456789abcdef'::uuid, md5('batch2')::uuid, md5('batch3')::uuid]) j;
INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id, event_type, attempt,
                        outcome, status_code, latency_ms, batch_size, job_ids)
SELECT md5('batch1')::uuid, md5('batch1'), s.id, s.endpoint_id, 'evt_b1', 'appointment/created', 1, 'success', 204,
       8, 4, ARRAY[md5('batch1')::uuid, '0123456789abcdef0123456789abcdef'::uuid, md5('batch2')::uuid,
                   md5('batch3')::uuid]
FROM subscriptions s WHERE s.id = '65f0c0ffee00000000000001';
"""


def sql_blocks():
    text = (pathlib.Path(SOURCE_DIR) / "README.md").read_text()
    return re.findall(r"^```sql\n(.*?)^```", text, re.S | re.M)


def psql(db, sql):
    out = subprocess.run(["psql", db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", "-"],
                         input=sql, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"recipe failed:\n{sql}\n{out.stderr}"
    return out.stdout


def reset(db):
    db.execute_script(RESET + SEED)


def test_every_readme_sql_recipe_runs(db):
    db.migrate()
    blocks = sql_blocks()
    assert len(blocks) >= 15, "the README's Admin SQL section lost its recipes"
    joined = "\n".join(blocks)
    for needed in ("hookd_create_token(", "revoked_at = now()", "INSERT INTO subscriptions",
                   "SET active = false", "hookd_failing_endpoints", "hookd_release_endpoint(",
                   "hookd_delivery_stats", "hookd_new_secret()", "DELETE FROM subscriptions"):
        assert needed in joined, needed
    for sql in blocks:
        reset(db)
        psql(db, sql)


def test_recipes_do_what_they_say(db):
    db.migrate()
    blocks = sql_blocks()

    def block(marker):
        found = [b for b in blocks if marker in b]
        assert found, f"no README recipe contains {marker!r}"
        return found[0]

    reset(db)
    out = psql(db, block("SELECT hookd_create_token('account:acct_42'"))
    assert len(re.findall(r"hkd_[0-9a-f]{48}", out)) == 2
    assert db.scalar("SELECT count(*) FROM api_tokens WHERE name = 'CRM integration'") == 2

    reset(db)
    psql(db, block("UPDATE api_tokens SET revoked_at"))
    assert db.scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL") == 1

    reset(db)
    out = psql(db, block("INSERT INTO subscriptions (owner_kind, owner_id, name"))
    row = db.query("SELECT * FROM subscriptions WHERE name = 'Bookings to CRM' AND id <> %s", (SUB_ID,))[0]
    assert re.fullmatch(r"[0-9a-f]{24}", row["id"]) and row["secret"].startswith("whsec_")
    assert row["event_types"] == ["appointment/created", "appointment/updated", "client/*"]
    assert row["secret"] in out

    reset(db)
    psql(db, block("SET active = false, deactivated_reason = 'paused by admin'"))
    assert db.scalar("SELECT active FROM subscriptions WHERE id = %s", (SUB_ID,)) is False
    psql(db, block("SET active = true WHERE id = '65f0c0ffee00000000000001'"))
    assert db.query("SELECT active, deactivated_reason FROM subscriptions WHERE id = %s", (SUB_ID,)) == \
        [{"active": True, "deactivated_reason": None}]

    reset(db)
    old = db.scalar("SELECT secret FROM subscriptions WHERE id = %s", (SUB_ID,))
    psql(db, block("previous_secret = secret"))
    row = db.query("SELECT secret, previous_secret, previous_secret_expires_at > now() + interval '23 hours' AS ok"
                   " FROM subscriptions WHERE id = %s", (SUB_ID,))[0]
    assert row["previous_secret"] == old and row["secret"] != old and row["ok"] is True

    reset(db)
    out = psql(db, block("SELECT hookd_release_endpoint('https://crm.example.com/hooks')"))
    assert "2" in out.split()  # two owners have that URL
    assert db.scalar("SELECT count(*) FROM endpoints WHERE greylisted_until IS NOT NULL") == 0
    assert db.scalar("SELECT count(*) FROM parked_jobs WHERE not_before > now()") == 0

    reset(db)
    psql(db, block("WHERE owner_kind = 'account' AND owner_id = 'acct_42' AND url ="))
    assert db.query("SELECT owner_id, greylisted_until IS NULL AS released FROM endpoints"
                    " WHERE url = %s ORDER BY owner_id", (URL,)) == \
        [{"owner_id": "acct_42", "released": True}, {"owner_id": "acct_7", "released": False}]

    reset(db)
    redeliver = block("':redeliver:'")
    psql(db, redeliver)
    rows = db.query("SELECT job FROM parked_jobs WHERE reason = 'retry' AND attempt = 0 AND not_before <= now()")
    # failed attempts with a job in the last hour: g = 1, 2, 4, 5
    assert len(rows) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", json.loads(r["job"])["id"]) for r in rows)
    psql(db, redeliver)
    assert db.scalar("SELECT count(*) FROM parked_jobs WHERE reason = 'retry' AND attempt = 0"
                     " AND not_before <= now()") == 4

    reset(db)
    out = psql(db, block("SELECT 'finished' AS what"))
    # the job's own finished row and the batched request that delivered it
    assert re.search(r"finished\s*\|\s*delivered", out), out
    assert re.search(r"attempt 1\s*\|\s*success 204 \(request of 4 jobs\)", out), out
    stats = db.query("SELECT attempts, succeeded FROM hookd_delivery_stats WHERE subscription_id = %s", (SUB_ID,))
    assert stats == [{"attempts": 10, "succeeded": 6}]  # six seeded attempts, one of them a request of 4
