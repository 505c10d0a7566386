-- hookd schema, version 4: fewer and cheaper writes per job for hookd-worker.

-- One log row per successful batched request instead of one per job: job_id
-- and event_id/event_type are its first job's (the request's webhook-id),
-- job_ids every job it delivered, batch_size the request's. NULL job_ids =
-- the row is about job_id alone (every other row). Such a row is written
-- in the same transaction as the jobs' finished_jobs rows, so its
-- created_at equals their finished_at.
ALTER TABLE deliveries ADD COLUMN job_ids uuid[];

-- Only retries are looked up by due time (grey-list parked jobs come back
-- per endpoint, in seq order): the jobs of dead endpoints skip this index.
DROP INDEX parked_jobs_due_idx;
CREATE INDEX parked_jobs_due_idx ON parked_jobs (not_before) WHERE reason = 'retry';

-- Statistics count job attempts as before: a row stands for its jobs.
CREATE OR REPLACE VIEW hookd_delivery_stats AS
SELECT d.subscription_id,
       s.owner_kind,
       s.owner_id,
       s.target_url,
       sum(coalesce(cardinality(d.job_ids), 1)) AS attempts,
       coalesce(sum(coalesce(cardinality(d.job_ids), 1)) FILTER (WHERE d.outcome = 'success'), 0)
           AS succeeded,
       coalesce(sum(coalesce(cardinality(d.job_ids), 1))
                    FILTER (WHERE d.outcome IN ('failure', 'failed', 'gone')), 0) AS failed,
       round(100.0 * coalesce(sum(coalesce(cardinality(d.job_ids), 1))
                                  FILTER (WHERE d.outcome = 'success'), 0)
             / sum(coalesce(cardinality(d.job_ids), 1)), 2) AS success_pct,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.latency_ms) AS p50_latency_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY d.latency_ms) AS p99_latency_ms,
       max(d.created_at) AS last_attempt_at
FROM deliveries d
LEFT JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.created_at > now() - interval '24 hours'
GROUP BY d.subscription_id, s.owner_kind, s.owner_id, s.target_url;
