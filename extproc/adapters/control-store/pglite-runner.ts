/**
 * {@link QueryRunner} over PGlite, the embedded PostgreSQL of `voicegate start` without
 * DATABASE_URL. PGlite is one connection: its `transaction()`, `query()` and `exec()` all queue on
 * one internal mutex, so transactions run strictly one after another in this process — that is the
 * serialisation the advisory lock gives on a server. Its data directory cannot be shared by two
 * processes, so there is no second migrator to exclude.
 */
import type { PGlite } from '@electric-sql/pglite';
import type { QueryRunner, Sql } from './query-runner.ts';

interface PgliteTx {
  query<T>(query: string, params?: unknown[]): Promise<{ rows: T[] }>;
  exec(query: string): Promise<unknown>;
}

function sqlOf(tx: PgliteTx): Sql {
  return {
    async query<R extends object>(text: string, params?: readonly unknown[]) {
      return (await tx.query<R>(text, params ? [...params] : undefined)).rows;
    },
    async exec(text: string) {
      await tx.exec(text);
    },
  };
}

export class PgliteQueryRunner implements QueryRunner {
  /** `owned`: close the database with the runner (the embedded default opens it for the store). */
  constructor(private readonly db: PGlite, private readonly owned = false) {}

  transaction<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) => fn(sqlOf(tx)));
  }

  async close(): Promise<void> {
    if (this.owned && !this.db.closed) await this.db.close();
  }
}
