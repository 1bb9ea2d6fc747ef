/**
 * NATS and PostgreSQL as components. Opening them is part of starting: an unreachable server fails
 * the start with one line, and whatever opened before is closed again by the runner.
 */
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { StartError, type Component, messageOf } from '../lifecycle.ts';
import { DATABASE_CONNECT_TIMEOUT_MS } from '../usage-pipeline.ts';

export interface NatsComponent extends Component {
  readonly connection: NatsConnection;
}

export function natsComponent(url: string, name: string): NatsComponent {
  let nc: NatsConnection | undefined;
  return {
    name: 'NATS connection',
    get connection() {
      if (!nc) throw new Error('NATS used before it connected');
      return nc;
    },
    async start() {
      try {
        nc = await connect({ servers: url, name, maxReconnectAttempts: -1 });
      } catch (err) {
        throw new StartError(`NATS at ${redact(url)} is unreachable (${messageOf(err)})`, { cause: err });
      }
    },
    drain() {},
    async close() {
      await nc?.drain().catch(() => nc?.close());
    },
  };
}

export interface PoolComponent extends Component {
  readonly pool: pg.Pool;
}

/** Starting checks out one connection, so a wrong URL fails here and not at the first batch. */
export function poolComponent(url: string, max?: number): PoolComponent {
  const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS, ...(max ? { max } : {}) });
  // An idle client losing its server emits on the pool; without a listener that ends the process.
  pool.on('error', () => undefined);
  return {
    name: 'PostgreSQL pool',
    pool,
    async start() {
      try {
        (await pool.connect()).release();
      } catch (err) {
        throw new StartError(`PostgreSQL at ${redact(url)} is unreachable (${messageOf(err)})`, { cause: err });
      }
    },
    drain() {},
    async close() {
      await pool.end();
    },
  };
}

/** A URL without its password, fit for a log line. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable URL)';
  }
}
