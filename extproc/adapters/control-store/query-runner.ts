/**
 * The one seam between the control-plane SQL and a PostgreSQL engine. `pg` and PGlite both
 * implement it in a few lines, so every query of the store is written once (sql-store.ts).
 */

/** Statements inside one transaction. */
export interface Sql {
  /** One statement with `$n` parameters; rows as the driver decodes them (see rows.ts). */
  query<R extends object>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /** Several statements, no parameters (migrations). */
  exec(text: string): Promise<void>;
}

export interface QueryRunner {
  /** Runs `fn` between BEGIN and COMMIT; ROLLBACK when it throws (the error is rethrown). */
  transaction<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /** Releases what the runner opened itself (never a pool or database the caller handed it). */
  close(): Promise<void>;
}
