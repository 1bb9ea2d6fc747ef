/**
 * The example config (examples/voicegate.yaml, upstream swapped for an `instant` simulator) behind
 * the real edge and decision, with every usage span kept in memory: what `npm start` serves, for
 * tests that assert what the client got, what the simulator received and what was billed.
 */
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { devTokens, exampleSnapshot, providerKeys, type Tokens } from '../e2e/stack.ts';
import { until } from './helpers.ts';

export interface ExampleEdge {
  readonly edge: EdgeHandle;
  readonly sim: SimulatorHandle;
  readonly snapshot: Snapshot;
  readonly tokens: Tokens;
  readonly keys: { tts: string; stt: string };
  readonly spans: UsageSpan[];
  /** The one span of `path` published after `since` spans (waits for it). */
  spanOf(path: string, since: number): Promise<UsageSpan>;
  close(): Promise<void>;
}

export async function startExampleEdge(): Promise<ExampleEdge> {
  const keys = providerKeys(await exampleSnapshot('http://127.0.0.1:1'));
  const sim = await startSimulator({
    host: '127.0.0.1',
    port: 0,
    profile: 'instant',
    accounts: [
      { key: keys.tts, units: 4 },
      { key: keys.stt, units: 4 },
    ],
  });
  const snapshot = await exampleSnapshot(sim.url);
  const source = new StaticSnapshotSource(snapshot);
  const spans: UsageSpan[] = [];
  const sink: SpanSink = { publish: (s) => void spans.push(s), flush: async () => {}, close: async () => {} };
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), observe: createUsageObserverFactory({ sink }) });
  return {
    edge,
    sim,
    snapshot,
    tokens: await devTokens(snapshot),
    keys,
    spans,
    async spanOf(path, since) {
      const mine = () => spans.slice(since).filter((s) => s.path === path);
      await until(() => mine().length > 0, 5000, `span of ${path}`);
      if (mine().length !== 1) throw new Error(`${mine().length} spans of ${path}`);
      return mine()[0]!;
    },
    async close() {
      await edge.close();
      await sim.close();
    },
  };
}
