/**
 * Reading roll-ups back: the rows behind `voicegate usage` and `GET /usage`.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Pool } from 'pg';
import { z } from 'zod';

export const USAGE_DIMENSIONS = ['user', 'team', 'model', 'account'] as const;
export type UsageDimension = (typeof USAGE_DIMENSIONS)[number];

export interface UsageRow {
  /** The user, team, model (`provider/model`) or account name; '' = none. */
  readonly key: string;
  readonly requests: number;
  readonly errors: number;
  readonly characters: number;
  /** Exact decimal string. */
  readonly audioSeconds: string;
  /** Exact decimal string, USD. */
  readonly costUsd: string;
}

const KEY_SQL: Record<UsageDimension, { table: string; key: string }> = {
  user: { table: 'usage_daily', key: 'user_name' },
  team: { table: 'usage_team_daily', key: 'team' },
  model: { table: 'usage_daily', key: "provider || '/' || model" },
  account: { table: 'usage_daily', key: 'account' },
};

/**
 * Parses `--since`: an ISO date/time, or a relative `Nd` / `Nh`. Roll-ups are daily, so the
 * result is the UTC day containing that instant (inclusive).
 * @example parseSince('7d', new Date('2025-01-10T12:00:00Z')) // '2025-01-03'
 */
export function parseSince(text: string, now: Date = new Date()): string {
  const rel = /^(\d+)([dh])$/.exec(text.trim());
  const at = rel ? new Date(now.getTime() - Number(rel[1]) * (rel[2] === 'd' ? 86_400_000 : 3_600_000)) : new Date(text);
  if (Number.isNaN(at.getTime())) throw new RangeError(`--since must be an ISO date or like 7d / 24h, got ${JSON.stringify(text)}`);
  return at.toISOString().slice(0, 10);
}

/** Sums the roll-ups by one dimension from `sinceDay` (YYYY-MM-DD, UTC) on, costliest first. */
export function queryUsage(pool: Pick<Pool, 'query'>, by: UsageDimension, sinceDay: string): Promise<UsageRow[]> {
  return sumUsage(pool, by, sinceDay, null);
}

/** Like {@link queryUsage}, for the days `fromDay`..`toDay` (YYYY-MM-DD, UTC, inclusive): `GET /admin/v1/usage`. */
export function queryUsageBetween(pool: Pick<Pool, 'query'>, by: UsageDimension, fromDay: string, toDay: string): Promise<UsageRow[]> {
  return sumUsage(pool, by, fromDay, toDay);
}

async function sumUsage(pool: Pick<Pool, 'query'>, by: UsageDimension, fromDay: string, toDay: string | null): Promise<UsageRow[]> {
  const { table, key } = KEY_SQL[by];
  const { rows } = await pool.query<{ key: string; requests: string; errors: string; characters: string; audio_seconds: string; cost_usd: string }>(
    `SELECT ${key} AS key, sum(requests)::text AS requests, sum(errors)::text AS errors,
            sum(characters)::text AS characters, sum(audio_seconds)::text AS audio_seconds, sum(cost_usd)::text AS cost_usd
       FROM ${table} WHERE day >= $1::date AND ($2::date IS NULL OR day <= $2::date) GROUP BY 1 ORDER BY sum(cost_usd) DESC, 1`,
    [fromDay, toDay],
  );
  return rows.map((r) => ({
    key: r.key,
    requests: Number(r.requests),
    errors: Number(r.errors),
    characters: Number(r.characters),
    audioSeconds: trimDecimal(r.audio_seconds),
    costUsd: trimDecimal(r.cost_usd),
  }));
}

function trimDecimal(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** A fixed-width text table of usage rows. */
export function formatUsageTable(by: UsageDimension, rows: readonly UsageRow[]): string {
  const head = [by.toUpperCase(), 'REQUESTS', 'ERRORS', 'CHARACTERS', 'AUDIO_SECONDS', 'COST_USD'];
  const body = rows.map((r) => [r.key || '-', String(r.requests), String(r.errors), String(r.characters), r.audioSeconds, r.costUsd]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

const querySchema = z.object({
  by: z.enum(USAGE_DIMENSIONS).default('user'),
  since: z.string().default('30d'),
});

/**
 * `GET /usage?by=user|team|model|account&since=ISO|7d` → `{ by, since, rows }` JSON. Returns
 * false when the request is not for `/usage`, so it can sit in front of other handlers.
 */
export interface UsageHttpAccess {
  /**
   * When set, callers must send `Authorization: Bearer <adminToken>` (`VOICEGATE_ADMIN_TOKEN`);
   * when not, only loopback peers are answered. Per-user costs are never public.
   */
  readonly adminToken?: string;
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\./.test(a);
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createUsageHttpHandler(pool: Pool, access: UsageHttpAccess = {}): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/usage') return false;
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (access.adminToken) {
      const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
      if (!m?.[1] || !sameSecret(m[1], access.adminToken)) {
        send(401, { error: { code: 'unauthorized', message: 'GET /usage needs the admin bearer token' } }, { 'www-authenticate': 'Bearer realm="voicegate-admin"' });
        return true;
      }
    } else if (!isLoopback(req.socket.remoteAddress)) {
      send(403, { error: { code: 'forbidden', message: 'GET /usage answers loopback callers only unless VOICEGATE_ADMIN_TOKEN is set' } });
      return true;
    }
    if (req.method !== 'GET') {
      send(405, { error: { code: 'method_not_allowed', message: 'use GET' } });
      return true;
    }
    const q = querySchema.safeParse(Object.fromEntries(url.searchParams));
    let since: string;
    try {
      if (!q.success) throw new RangeError('by must be one of user, team, model, account');
      since = parseSince(q.data.since);
    } catch (err) {
      send(400, { error: { code: 'invalid_query', message: (err as Error).message } });
      return true;
    }
    try {
      const rows = await queryUsage(pool, q.data.by, since);
      send(200, { by: q.data.by, since, rows });
    } catch {
      send(503, { error: { code: 'usage_unavailable', message: 'usage database unavailable' } });
    }
    return true;
  };
}
