/**
 * Writes a batch of spans into PostgreSQL in one transaction: raw rows keyed by span id, and the
 * daily roll-ups updated from exactly the rows that were inserted now (INSERT … ON CONFLICT DO
 * NOTHING RETURNING feeds the roll-up upserts), so a redelivered span is never counted twice.
 */
import type { Pool, PoolClient } from 'pg';
import { isErrorSpan, type UsageSpan } from '../../core/usage/span.ts';

const COLUMNS = [
  ['span_id', 'text'], ['trace_id', 'text'], ['day', 'date'], ['start_time', 'timestamptz'],
  ['end_time', 'timestamptz'], ['duration_ms', 'double precision'], ['status', 'integer'],
  ['close_code', 'integer'], ['decision', 'text'], ['user_name', 'text'], ['teams', 'text[]'],
  ['provider', 'text'], ['model', 'text'], ['model_type', 'text'], ['account', 'text'],
  ['route_kind', 'text'], ['endpoint', 'text'], ['request_id', 'text'], ['provider_request_id', 'text'],
  ['bytes_in', 'bigint'], ['bytes_out', 'bigint'], ['characters', 'bigint'], ['audio_seconds', 'numeric'],
  ['estimated', 'boolean'], ['cost_usd', 'numeric'], ['is_error', 'boolean'], ['error', 'text'],
  ['config_version', 'bigint'], ['source', 'text'], ['span', 'jsonb'],
] as const;

const NAMES = COLUMNS.map(([n]) => n).join(', ');
const SUMS = `count(*), count(*) FILTER (WHERE is_error), coalesce(sum(characters), 0),
  coalesce(sum(audio_seconds), 0), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE estimated)`;
const ADD = (t: string) => `requests = ${t}.requests + EXCLUDED.requests, errors = ${t}.errors + EXCLUDED.errors,
  characters = ${t}.characters + EXCLUDED.characters, audio_seconds = ${t}.audio_seconds + EXCLUDED.audio_seconds,
  cost_usd = ${t}.cost_usd + EXCLUDED.cost_usd, estimated = ${t}.estimated + EXCLUDED.estimated`;
const METRICS = 'requests, errors, characters, audio_seconds, cost_usd, estimated';

// Roll-up rows are upserted in key order so concurrent aggregators lock them in the same order.
const BATCH_SQL = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(${COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')})
), ins AS (
  INSERT INTO usage_spans (${NAMES}) SELECT ${NAMES} FROM input ORDER BY span_id
  ON CONFLICT (span_id) DO NOTHING
  RETURNING day, user_name, teams, provider, model, account, is_error, characters, audio_seconds, cost_usd, estimated
), daily AS (
  INSERT INTO usage_daily AS d (day, user_name, provider, model, account, ${METRICS})
  SELECT day, user_name, provider, model, account, ${SUMS} FROM ins
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (day, user_name, provider, model, account) DO UPDATE SET ${ADD('d')}
  RETURNING 1
), team AS (
  INSERT INTO usage_team_daily AS t (day, team, provider, model, account, ${METRICS})
  SELECT day, team, provider, model, account, ${SUMS}
  FROM ins CROSS JOIN LATERAL unnest(CASE WHEN cardinality(teams) = 0 THEN ARRAY[''] ELSE teams END) AS team
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (day, team, provider, model, account) DO UPDATE SET ${ADD('t')}
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM daily)::int AS daily, (SELECT count(*) FROM team)::int AS team`;

/** The row one span becomes in `usage_spans`. */
export function spanRow(span: UsageSpan): Record<(typeof COLUMNS)[number][0], unknown> {
  return {
    span_id: span.spanId,
    trace_id: span.traceId,
    day: new Date(span.startTime).toISOString().slice(0, 10), // roll-up days are UTC
    start_time: span.startTime,
    end_time: span.endTime,
    duration_ms: span.durationMs,
    status: span.status,
    close_code: span.closeCode ?? null,
    decision: span.decision,
    user_name: span.user,
    teams: span.teams,
    provider: span.provider,
    model: span.model,
    model_type: span.modelType,
    account: span.account,
    route_kind: span.routeKind,
    endpoint: span.endpoint,
    request_id: span.requestId,
    provider_request_id: span.providerRequestId,
    bytes_in: span.bytesIn,
    bytes_out: span.bytesOut,
    characters: span.characters ?? null,
    audio_seconds: span.audioSeconds === undefined ? null : span.audioSeconds.toFixed(6),
    estimated: span.estimated,
    cost_usd: span.costUsd,
    is_error: isErrorSpan(span),
    error: span.error,
    config_version: span.configVersion,
    source: span.source,
    span,
  };
}

export interface WriteResult {
  /** Spans new to the database (the rest were already there: redeliveries). */
  readonly inserted: number;
}

const RETRYABLE = new Set(['40001', '40P01']); // serialization failure, deadlock

/** Writes spans in one transaction; retries serialization failures and deadlocks. */
export async function writeSpans(pool: Pool, spans: readonly UsageSpan[]): Promise<WriteResult> {
  if (spans.length === 0) return { inserted: 0 };
  const rows = JSON.stringify(spans.map(spanRow));
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      return await inTransaction(client, rows);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= 5) throw err;
    } finally {
      client.release();
    }
  }
}

async function inTransaction(client: PoolClient, rows: string): Promise<WriteResult> {
  await client.query('BEGIN');
  try {
    const r = await client.query<{ inserted: number }>(BATCH_SQL, [rows]);
    await client.query('COMMIT');
    return { inserted: r.rows[0]?.inserted ?? 0 };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
