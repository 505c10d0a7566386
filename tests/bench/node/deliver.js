// Baseline for tests/bench: hookd-worker's core job written the way a Node
// team would (kafkajs consumer, undici keep-alive agent, node-postgres):
// per batch of consumed jobs, skip the ids already finished (one query),
// build the standard-format body, sign it (Standard Webhooks), POST it to
// the subscription's URL with bounded concurrency, record the finished jobs
// and their delivery log rows (one statement, as hookd-worker writes them
// with the default HOOKD_DELIVERY_LOG=all), then commit the offsets. No
// retries, grey-listing or batching: less than hookd-worker does per job.
//
//   node deliver.js --brokers B --topic T --group G --count N \
//        --subs FILE --database URL [--concurrency C]
//
// FILE: JSON {"<subscription id>": {"url": "...", "secret": "whsec_..."}}.
// Prints "delivered=N secs=S rps=R" once N jobs got a 2xx.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const lz4 = require('lz4js');
const { Pool } = require('pg');
const { Agent, request } = require('undici');

// hookd publishes jobs LZ4-compressed (Kafka's LZ4 is the frame format)
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) { return Buffer.from(lz4.compress(encoder.buffer)); },
  async decompress(buffer) { return Buffer.from(lz4.decompress(buffer)); },
});

function args() {
  const a = {};
  for (let i = 2; i < process.argv.length; i += 2) a[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  for (const k of ['brokers', 'topic', 'group', 'count', 'subs', 'database']) {
    if (!a[k]) {
      console.error(`missing --${k}`);
      process.exit(2);
    }
  }
  return a;
}

function sign(secret, id, ts, body) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const mac = crypto.createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

// 32 hex chars -> the uuid text PostgreSQL takes
function uuid(id) {
  return `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`;
}

async function main() {
  const a = args();
  const want = parseInt(a.count, 10);
  const concurrency = parseInt(a.concurrency || '64', 10);
  const subs = JSON.parse(fs.readFileSync(a.subs, 'utf8'));
  const agent = new Agent({ connections: concurrency, pipelining: 1, keepAliveTimeout: 30000 });
  const db = new Pool({ connectionString: a.database, max: 4 });
  const kafka = new Kafka({ clientId: 'bench-node', brokers: a.brokers.split(','), logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: a.group, maxBytesPerPartition: 1 << 20 });
  let delivered = 0;
  let started = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });

  // at most 'concurrency' requests in flight over all partitions
  let inflight = 0;
  const waiters = [];
  async function acquire() {
    if (inflight < concurrency) {
      inflight++;
      return;
    }
    await new Promise((resolve) => waiters.push(resolve)); // the slot is handed over
  }
  function release() {
    const next = waiters.shift();
    if (next) next();
    else inflight--;
  }

  // returns the delivery log row of the attempt
  async function deliver(job) {
    const sub = subs[job.subscription_id];
    const body = JSON.stringify({ type: job.type, id: job.event_id, timestamp: job.occurred_at,
                                  account: job.account, data: job.payload });
    const t0 = Date.now();
    const ts = Math.floor(t0 / 1000);
    const res = await request(sub.url, {
      method: 'POST', dispatcher: agent, body,
      headers: { 'content-type': 'application/json', 'user-agent': 'bench-node',
                 'webhook-id': job.id, 'webhook-timestamp': String(ts),
                 'webhook-signature': sign(sub.secret, job.id, ts, body) },
    });
    await res.body.dump();
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`status ${res.statusCode}`);
    delivered++;
    return [uuid(job.id), job.id, job.subscription_id, job.endpoint_id, job.event_id, job.type,
            res.statusCode, Date.now() - t0];
  }

  await consumer.connect();
  await consumer.subscribe({ topic: a.topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: 4,
    eachBatch: async ({ batch, heartbeat, commitOffsetsIfNecessary }) => {
      if (!started) started = Date.now();
      const jobs = batch.messages.map((m) => JSON.parse(m.value.toString()));
      const ids = jobs.map((j) => uuid(j.id));
      const seen = await db.query('SELECT job_id::text AS id FROM finished_jobs WHERE job_id = ANY($1::uuid[])', [ids]);
      const skip = new Set(seen.rows.map((r) => r.id));
      const sends = [];
      for (let i = 0; i < jobs.length; i++) {
        if (skip.has(ids[i])) continue;
        await acquire();
        sends.push(deliver(jobs[i]).finally(release));
      }
      const rows = await Promise.all(sends);
      const col = (k) => rows.map((r) => r[k]);
      await db.query(
        "WITH f AS (INSERT INTO finished_jobs (job_id, state, subscription_id)" +
        " SELECT id, 'delivered', sub FROM unnest($1::uuid[], $2::text[]) AS t(id, sub)" +
        ' ON CONFLICT (job_id) DO NOTHING)' +
        ' INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id,' +
        "  event_type, attempt, outcome, status_code, latency_ms)" +
        " SELECT j, w, s, e, ev, ty, 1, 'success', st, l FROM unnest($3::uuid[], $4::text[]," +
        '  $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::int[])' +
        '  AS t(j, w, s, e, ev, ty, st, l)',
        [ids, jobs.map((j) => j.subscription_id), ...[0, 1, 2, 3, 4, 5, 6, 7].map(col)]);
      await commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [
        { partition: batch.partition, offset: (BigInt(batch.lastOffset()) + 1n).toString() }] }] });
      await heartbeat();
      if (delivered >= want) done();
    },
  });
  await finished;
  const secs = (Date.now() - started) / 1000;
  console.log(`delivered=${delivered} secs=${secs.toFixed(3)} rps=${(delivered / secs).toFixed(0)}`);
  await consumer.disconnect();
  await agent.close();
  await db.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
