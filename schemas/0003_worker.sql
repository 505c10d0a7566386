-- hookd schema, version 3: indexes for hookd-worker's periodic queries.
-- (0002 is the subscription API's.)

-- Probes: every scheduler poll looks for endpoints whose grey-list period
-- is over; the grey-listed gauge counts them. Few rows are ever grey-listed.
CREATE INDEX endpoints_greylisted_idx ON endpoints (greylisted_until)
    WHERE greylisted_until IS NOT NULL;

-- Expiry of parked jobs after HOOKD_PARK_RETENTION_H, oldest first.
CREATE INDEX parked_jobs_expires_idx ON parked_jobs (expires_at);
