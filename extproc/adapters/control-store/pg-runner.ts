/** {@link QueryRunner} over a `pg` pool: one pooled connection per transaction. */
import type { Pool, PoolClient } from 'pg';
import type { QueryRunner, Sql } from './query-runner.ts';

function sqlOf(client: PoolClient): Sql {
  return {
    async query<R extends object>(text: string, params?: readonly unknown[]) {
      const result = await client.query<R>(text, params ? [...params] : undefined);
      return result.rows;
    },
    async exec(text: string) {
      // Without parameters pg uses the simple query protocol, which accepts several statements.
      await client.query(text);
    },
  };
}

export class PgQueryRunner implements QueryRunner {
  constructor(private readonly pool: Pool) {}

  async transaction<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const value = await fn(sqlOf(client));
      await client.query('COMMIT');
      return value;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        // A connection that cannot roll back is discarded, not returned to the pool mid-transaction.
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** The pool belongs to the caller. */
  async close(): Promise<void> {}
}
