/** What every handler of one simulator instance shares. */
import type { Accounts } from './accounts.ts';
import type { Pacing } from './pacing.ts';

export interface SimContext {
  readonly pacing: Pacing;
  readonly accounts: Accounts;
  readonly wsConnectionsPerUnit: number;
  readonly allowQueryToken: boolean;
}
