/** What every handler of one simulator instance shares. */
import type { Accounts } from './accounts.ts';
import type { Pacing } from './pacing.ts';
import type { FrameRecorder } from './recorder.ts';

export interface SimContext {
  readonly pacing: Pacing;
  readonly accounts: Accounts;
  readonly wsConnectionsPerUnit: number;
  readonly allowQueryToken: boolean;
  /** Client messages received on TTS WebSockets, for tests to assert on. */
  readonly frames: FrameRecorder;
}
