-- hookd schema, version 1: event type catalog, subscriptions, endpoints with
-- grey-list state, parked/scheduled jobs, finished-job dedup, delivery log,
-- API tokens, change notifications and the admin views and functions.
-- Applied by hookd-ingest --migrate inside one transaction.

-- ---------------------------------------------------------------- helpers

-- n lower-case hex characters (n <= 64) from the server's strong random source.
CREATE FUNCTION hookd_random_hex(n integer) RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT left(encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex'), n)
$$;

-- Subscription ids look like MongoDB ObjectIds (24 hex: 8 of seconds since
-- the epoch, 16 random) so Vyte clients accept them and they sort by creation.
CREATE FUNCTION hookd_new_id() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT lpad(to_hex(extract(epoch FROM clock_timestamp())::bigint), 8, '0') || hookd_random_hex(16)
$$;

-- "whsec_" + base64 of 24 random bytes (Standard Webhooks secret format).
CREATE FUNCTION hookd_new_secret() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT 'whsec_' || encode(decode(hookd_random_hex(48), 'hex'), 'base64')
$$;

-- Deterministic endpoint id of (owner, target url).
CREATE FUNCTION hookd_endpoint_id(owner_kind text, owner_id text, url text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'ep_' || left(encode(sha256(convert_to(owner_kind || ':' || owner_id || ' ' || url, 'UTF8')), 'hex'), 24)
$$;

-- ---------------------------------------------------------------- catalog

CREATE TABLE event_types (
    name            text PRIMARY KEY
                    CHECK (name ~ '^[A-Za-z0-9_-]{1,63}/[A-Za-z0-9_-]{1,63}$'),
    entity          text GENERATED ALWAYS AS (split_part(name, '/', 1)) STORED,
    description     text NOT NULL DEFAULT '',
    source          text NOT NULL DEFAULT 'custom',   -- which platform defines it
    directory_level boolean NOT NULL DEFAULT false,   -- only for directory-scoped subscriptions
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Other names for a type (Communico hook names such as eventAdded).
CREATE TABLE event_type_aliases (
    alias text PRIMARY KEY CHECK (alias ~ '^[A-Za-z0-9_-]{1,63}$'),
    name  text NOT NULL REFERENCES event_types (name) ON DELETE CASCADE
);

-- Normalises an event type or pattern the way hookd-ingest does:
-- entity.event -> entity/event, verb forms (create -> created ...), aliases.
-- Raises on an invalid value.
CREATE FUNCTION hookd_normalize_type(t text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ent text;
    ev text;
    parts text[];
    aliased text;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'event type must not be null';
    END IF;
    IF t = '*' THEN
        RETURN '*';
    END IF;
    IF position('/' IN t) > 0 THEN
        ent := split_part(t, '/', 1);
        ev := substr(t, length(ent) + 2);
    ELSIF position('.' IN t) > 0 THEN
        parts := string_to_array(t, '.');
        ent := parts[cardinality(parts) - 1];
        ev := parts[cardinality(parts)];
    ELSE
        SELECT a.name INTO aliased FROM event_type_aliases a WHERE a.alias = t;
        IF aliased IS NULL THEN
            RAISE EXCEPTION 'invalid event type "%": expected entity/event, entity/*, * or a known alias', t
                USING ERRCODE = '22023';
        END IF;
        RETURN aliased;
    END IF;
    IF ent !~ '^[A-Za-z0-9_-]{1,63}$' OR (ev <> '*' AND ev !~ '^[A-Za-z0-9_-]{1,63}$') THEN
        RAISE EXCEPTION 'invalid event type "%": expected entity/event, entity/*, * or a known alias', t
            USING ERRCODE = '22023';
    END IF;
    IF ent <> 'custom' THEN
        ev := CASE ev
                WHEN 'create' THEN 'created'
                WHEN 'update' THEN 'updated'
                WHEN 'delete' THEN 'deleted'
                WHEN 'cancel' THEN 'cancelled'
                WHEN 'confirm' THEN 'confirmed'
                ELSE ev
              END;
    END IF;
    RETURN ent || '/' || ev;
END
$$;

INSERT INTO event_types (name, source, directory_level, description) VALUES
    -- vCita
    ('client/created', 'vcita', false, 'A client was created'),
    ('client/updated', 'vcita', false, 'A client was updated'),
    ('client/deleted', 'vcita', false, 'A client was deleted'),
    ('appointment/created', 'vcita', false, 'An appointment was booked'),
    ('appointment/updated', 'vcita', false, 'An appointment was changed'),
    ('appointment/deleted', 'vcita', false, 'An appointment was deleted'),
    ('payment/created', 'vcita', false, 'A payment was created'),
    ('payment/updated', 'vcita', false, 'A payment was updated'),
    ('payment/deleted', 'vcita', false, 'A payment was deleted'),
    ('payment/paid', 'vcita', false, 'A payment was paid'),
    ('pivot/event', 'vcita', true, 'Directory-level pivot event'),
    ('pivot/update', 'vcita', true, 'Directory-level pivot update'),
    ('business/created', 'vcita', false, 'A business joined'),
    ('meeting/created', 'vcita', false, 'A meeting was scheduled'),
    ('meeting/cancelled', 'vcita', false, 'A meeting was cancelled'),
    ('invoice/issued', 'vcita', false, 'An invoice was issued'),
    -- VikAppointments
    ('appointment/status_changed', 'vikappointments', false, 'An appointment status changed'),
    ('coupon/created', 'vikappointments', false, 'A coupon was created'),
    ('coupon/updated', 'vikappointments', false, 'A coupon was updated'),
    ('coupon/deleted', 'vikappointments', false, 'A coupon was deleted'),
    ('coupon/status_changed', 'vikappointments', false, 'A coupon status changed'),
    ('customer/created', 'vikappointments', false, 'A customer was created'),
    ('customer/updated', 'vikappointments', false, 'A customer was updated'),
    ('customer/deleted', 'vikappointments', false, 'A customer was deleted'),
    ('customer/status_changed', 'vikappointments', false, 'A customer status changed'),
    ('employee/created', 'vikappointments', false, 'An employee was created'),
    ('employee/updated', 'vikappointments', false, 'An employee was updated'),
    ('employee/deleted', 'vikappointments', false, 'An employee was deleted'),
    ('employee/status_changed', 'vikappointments', false, 'An employee status changed'),
    ('package_order/created', 'vikappointments', false, 'A package order was created'),
    ('package_order/updated', 'vikappointments', false, 'A package order was updated'),
    ('package_order/deleted', 'vikappointments', false, 'A package order was deleted'),
    ('package_order/status_changed', 'vikappointments', false, 'A package order status changed'),
    ('service/created', 'vikappointments', false, 'A service was created'),
    ('service/updated', 'vikappointments', false, 'A service was updated'),
    ('service/deleted', 'vikappointments', false, 'A service was deleted'),
    ('service/status_changed', 'vikappointments', false, 'A service status changed'),
    -- Vyte
    ('event/created', 'vyte', false, 'A Vyte event was created'),
    ('event/confirmed', 'vyte', false, 'A Vyte event was confirmed'),
    ('event/updated', 'vyte', false, 'A Vyte event was updated'),
    ('event/cancelled', 'vyte', false, 'A Vyte event was cancelled'),
    ('user/joined', 'vyte', false, 'A user joined'),
    -- Communico (canonical names; the hook names are aliases below)
    ('event/deleted', 'communico', false, 'An event was deleted'),
    ('registration/created', 'communico', false, 'A registration was added'),
    ('registration/updated', 'communico', false, 'A registration was updated'),
    ('registration/cancelled', 'communico', false, 'A registration was cancelled'),
    ('roomBooking/created', 'communico', false, 'A room booking was added'),
    ('roomBooking/updated', 'communico', false, 'A room booking was updated'),
    ('roomBooking/cancelled', 'communico', false, 'A room booking was cancelled');

INSERT INTO event_type_aliases (alias, name) VALUES
    ('eventAdded', 'event/created'),
    ('eventUpdated', 'event/updated'),
    ('eventCancelled', 'event/cancelled'),
    ('eventDeleted', 'event/deleted'),
    ('registrationAdded', 'registration/created'),
    ('registrationUpdated', 'registration/updated'),
    ('registrationCancelled', 'registration/cancelled'),
    ('roomBookingAdded', 'roomBooking/created'),
    ('roomBookingUpdated', 'roomBooking/updated'),
    ('roomBookingCancelled', 'roomBooking/cancelled');

-- ---------------------------------------------------------------- endpoints

-- One row per distinct (owner, target url); grey-list state lives here and is
-- shared by every worker replica.
CREATE TABLE endpoints (
    id                   text PRIMARY KEY,
    owner_kind           text NOT NULL,
    owner_id             text NOT NULL,
    url                  text NOT NULL,
    consecutive_failures integer NOT NULL DEFAULT 0,
    greylist_level       integer NOT NULL DEFAULT 0,   -- periods served so far
    greylisted_until     timestamptz,                  -- NULL: not grey-listed
    probe_job_id         uuid,                         -- probe in flight after a period
    probe_lease_until    timestamptz,
    last_failure_at      timestamptz,
    last_failure_class   text,
    last_status_code     integer,
    last_error           text,
    last_success_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_kind, owner_id, url)
);

-- ---------------------------------------------------------------- subscriptions

CREATE TABLE subscriptions (
    id                         text PRIMARY KEY DEFAULT hookd_new_id()
                               CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    owner_kind                 text NOT NULL CHECK (owner_kind IN ('account', 'directory')),
    owner_id                   text NOT NULL CHECK (length(owner_id) BETWEEN 1 AND 128),
    event_types                text[] NOT NULL
                               CHECK (cardinality(event_types) BETWEEN 1 AND 100),
    name                       text NOT NULL DEFAULT '',
    target_url                 text NOT NULL CHECK (length(target_url) BETWEEN 8 AND 2048),
    endpoint_id                text NOT NULL DEFAULT '' ,   -- set by trigger
    statuses                   text[],                       -- NULL: no status filter
    payload_mode               text NOT NULL DEFAULT 'full'
                               CHECK (payload_mode IN ('basic', 'full', 'extended')),
    body_format                text NOT NULL DEFAULT 'standard'
                               CHECK (body_format IN ('standard', 'vyte', 'vcita', 'vik')),
    batch                      boolean NOT NULL DEFAULT true,
    secret                     text NOT NULL DEFAULT hookd_new_secret(),
    previous_secret            text,                         -- still signed with until expiry
    previous_secret_expires_at timestamptz,
    active                     boolean NOT NULL DEFAULT true,
    deactivated_reason         text,
    description                text NOT NULL DEFAULT '',
    metadata                   jsonb NOT NULL DEFAULT '{}'::jsonb
                               CHECK (jsonb_typeof(metadata) = 'object'),
    source                     text NOT NULL DEFAULT 'sql'
                               CHECK (source IN ('native', 'vcita', 'vyte', 'sql')),
    version                    integer NOT NULL DEFAULT 0,   -- bumped on every update (Vyte __v)
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_owner_idx ON subscriptions (owner_kind, owner_id, id);
CREATE INDEX subscriptions_endpoint_idx ON subscriptions (endpoint_id);

-- Normalises patterns and statuses, derives the endpoint, bumps version.
CREATE FUNCTION hookd_subscriptions_before() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.event_types := ARRAY(SELECT DISTINCT hookd_normalize_type(t) FROM unnest(NEW.event_types) t);
    IF NEW.statuses IS NOT NULL AND cardinality(NEW.statuses) = 0 THEN
        NEW.statuses := NULL;
    END IF;
    IF NEW.statuses IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(NEW.statuses) s WHERE s IS NULL OR s = '') THEN
        RAISE EXCEPTION 'statuses must be non-empty strings' USING ERRCODE = '22023';
    END IF;
    NEW.endpoint_id := hookd_endpoint_id(NEW.owner_kind, NEW.owner_id, NEW.target_url);
    INSERT INTO endpoints (id, owner_kind, owner_id, url)
        VALUES (NEW.endpoint_id, NEW.owner_kind, NEW.owner_id, NEW.target_url)
        ON CONFLICT (id) DO NOTHING;
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
        IF NEW.active AND NOT OLD.active THEN
            NEW.deactivated_reason := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER subscriptions_before
    BEFORE INSERT OR UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION hookd_subscriptions_before();

-- Change notifications on channel hookd_subscriptions: "upsert:<id>,<id>..."
-- or "delete:<id>,..." in chunks of 200 ids, or "reload" for bulk changes.
-- Both services keep their caches live from these.
CREATE FUNCTION hookd_notify_ids(op text, ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer := 1;
    n integer := coalesce(cardinality(ids), 0);
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF n > 2000 THEN
        PERFORM pg_notify('hookd_subscriptions', 'reload');
        RETURN;
    END IF;
    WHILE i <= n LOOP
        PERFORM pg_notify('hookd_subscriptions', op || ':' || array_to_string(ids[i:i + 199], ','));
        i := i + 200;
    END LOOP;
END
$$;

CREATE FUNCTION hookd_subscriptions_notify_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hookd_notify_ids('upsert', ARRAY(SELECT id FROM new_rows));
    RETURN NULL;
END
$$;

CREATE FUNCTION hookd_subscriptions_notify_old() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hookd_notify_ids('delete', ARRAY(SELECT id FROM old_rows));
    RETURN NULL;
END
$$;

CREATE FUNCTION hookd_subscriptions_notify_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- an id change (rare, admin SQL) is a delete of the old id
    PERFORM hookd_notify_ids('delete',
        ARRAY(SELECT o.id FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id)));
    PERFORM hookd_notify_ids('upsert', ARRAY(SELECT id FROM new_rows));
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_notify_insert
    AFTER INSERT ON subscriptions REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_subscriptions_notify_new();
CREATE TRIGGER subscriptions_notify_update
    AFTER UPDATE ON subscriptions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_subscriptions_notify_update();
CREATE TRIGGER subscriptions_notify_delete
    AFTER DELETE ON subscriptions REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_subscriptions_notify_old();
CREATE FUNCTION hookd_subscriptions_notify_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookd_subscriptions', 'reload');
    RETURN NULL;
END
$$;
CREATE TRIGGER subscriptions_notify_truncate
    AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_subscriptions_notify_truncate();

-- Catalog changes: channel hookd_catalog, payload "reload".
CREATE FUNCTION hookd_catalog_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookd_catalog', 'reload');
    RETURN NULL;
END
$$;
CREATE TRIGGER event_types_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_types
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_catalog_notify();
CREATE TRIGGER event_type_aliases_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_type_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION hookd_catalog_notify();

-- Grey-list changes: channel hookd_endpoints, payload the endpoint id.
CREATE FUNCTION hookd_endpoints_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.greylisted_until IS DISTINCT FROM OLD.greylisted_until
       OR NEW.consecutive_failures IS DISTINCT FROM OLD.consecutive_failures
       OR NEW.greylist_level IS DISTINCT FROM OLD.greylist_level THEN
        PERFORM pg_notify('hookd_endpoints', NEW.id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER endpoints_notify AFTER UPDATE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION hookd_endpoints_notify();

-- ---------------------------------------------------------------- jobs

-- Jobs that wait in PostgreSQL instead of Kafka: retries scheduled for later
-- (reason 'retry') and jobs of grey-listed endpoints (reason 'greylist').
-- seq keeps the original order per endpoint.
CREATE TABLE parked_jobs (
    job_id          uuid PRIMARY KEY,
    seq             bigserial NOT NULL,
    endpoint_id     text NOT NULL,
    subscription_id text NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('retry', 'greylist')),
    attempt         integer NOT NULL DEFAULT 0,       -- attempts already made
    not_before      timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,                             -- worker instance holding it
    lease_until     timestamptz,
    job             text NOT NULL,                    -- the job message (JSON)
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX parked_jobs_endpoint_idx ON parked_jobs (endpoint_id, seq);
CREATE INDEX parked_jobs_due_idx ON parked_jobs (not_before);

-- Every job id a worker has finished, for effectively-once delivery (SPEC §6).
CREATE TABLE finished_jobs (
    job_id          uuid PRIMARY KEY,
    state           text NOT NULL
                    CHECK (state IN ('delivered', 'failed', 'cancelled', 'expired', 'gone')),
    subscription_id text,
    finished_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX finished_jobs_finished_idx ON finished_jobs (finished_at);

-- Delivery log: one row per attempt (HOOKD_DELIVERY_LOG).
CREATE TABLE deliveries (
    id               bigserial PRIMARY KEY,
    job_id           uuid NOT NULL,
    webhook_id       text NOT NULL,        -- the webhook-id header of the request
    subscription_id  text NOT NULL,
    endpoint_id      text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    attempt          integer NOT NULL,
    outcome          text NOT NULL
                     CHECK (outcome IN ('success', 'failure', 'failed', 'gone', 'cancelled', 'expired', 'parked')),
    error_class      text,                 -- timeout, dns, connect, tls, http_4xx, http_5xx, http_429, redirect, ssrf, other
    status_code      integer,
    latency_ms       integer,
    batch_size       integer NOT NULL DEFAULT 1,
    response_excerpt text,                 -- first 1 KiB of the response body
    job              text,                 -- the job message, kept for failed jobs (redelivery)
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_subscription_idx ON deliveries (subscription_id, id DESC);
CREATE INDEX deliveries_created_idx ON deliveries (created_at);
CREATE INDEX deliveries_job_idx ON deliveries (job_id);

-- ---------------------------------------------------------------- API tokens

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),  -- SHA-256 hex
    scope        text NOT NULL CHECK (scope ~ '^(account|directory):[^[:space:]]{1,128}$'),
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Creates a token for 'scope' ("account:<id>" or "directory:<id>") and
-- returns it; only its SHA-256 is stored, so this is the one time it is seen.
CREATE FUNCTION hookd_create_token(scope text, name text DEFAULT '') RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    token text := 'hkd_' || hookd_random_hex(48);
BEGIN
    INSERT INTO api_tokens (token_hash, scope, name)
        VALUES (encode(sha256(convert_to(token, 'UTF8')), 'hex'), scope, coalesce(name, ''));
    RETURN token;
END
$$;

-- Revokes a token given the token itself. Returns true if one was revoked.
CREATE FUNCTION hookd_revoke_token(token text) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        UPDATE api_tokens SET revoked_at = now()
        WHERE token_hash = encode(sha256(convert_to(token, 'UTF8')), 'hex') AND revoked_at IS NULL
        RETURNING 1)
    SELECT count(*) > 0 FROM r
$$;

-- ---------------------------------------------------------------- admin

-- Ends the grey-listing of every endpoint with this target URL (all owners)
-- and makes their parked jobs due now. Returns the number of endpoints.
CREATE FUNCTION hookd_release_endpoint(target_url text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    WITH e AS (
        UPDATE endpoints SET consecutive_failures = 0, greylist_level = 0,
               greylisted_until = NULL, probe_job_id = NULL, probe_lease_until = NULL,
               updated_at = now()
        WHERE url = target_url
        RETURNING id)
    SELECT count(*) INTO n FROM e;
    UPDATE parked_jobs SET not_before = now(), lease_owner = NULL, lease_until = NULL
        WHERE endpoint_id IN (SELECT id FROM endpoints WHERE url = target_url);
    RETURN n;
END
$$;

CREATE VIEW hookd_failing_endpoints AS
SELECT e.id AS endpoint_id,
       e.owner_kind,
       e.owner_id,
       e.url,
       e.consecutive_failures,
       e.greylist_level,
       e.greylisted_until,
       (e.greylisted_until IS NOT NULL AND e.greylisted_until > now()) AS greylisted,
       (SELECT count(*) FROM parked_jobs p WHERE p.endpoint_id = e.id) AS parked_jobs,
       e.last_failure_at,
       e.last_failure_class,
       e.last_status_code,
       e.last_error,
       e.last_success_at
FROM endpoints e
WHERE e.consecutive_failures > 0 OR e.greylisted_until IS NOT NULL
   OR EXISTS (SELECT 1 FROM parked_jobs p WHERE p.endpoint_id = e.id);

CREATE VIEW hookd_delivery_stats AS
SELECT d.subscription_id,
       s.owner_kind,
       s.owner_id,
       s.target_url,
       count(*) AS attempts,
       count(*) FILTER (WHERE d.outcome = 'success') AS succeeded,
       count(*) FILTER (WHERE d.outcome IN ('failure', 'failed', 'gone')) AS failed,
       round(100.0 * count(*) FILTER (WHERE d.outcome = 'success') / count(*), 2) AS success_pct,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.latency_ms) AS p50_latency_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY d.latency_ms) AS p99_latency_ms,
       max(d.created_at) AS last_attempt_at
FROM deliveries d
LEFT JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.created_at > now() - interval '24 hours'
GROUP BY d.subscription_id, s.owner_kind, s.owner_id, s.target_url;
