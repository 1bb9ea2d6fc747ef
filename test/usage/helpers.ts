/** Shared fixtures for the usage pipeline tests. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import type { ModelConfig, Snapshot } from '../../extproc/core/config/snapshot.ts';
import { newSpanId, SPAN_SCHEMA, type UsageSpan } from '../../extproc/core/usage/span.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { Exchange } from '../../extproc/core/exchange/exchange.ts';
import type { Allow, DecisionMetadata, Deny } from '../../extproc/core/decision/types.ts';

export const silentLogger = pino({ level: 'silent' });

const tts: ModelConfig = {
  name: 'lightning-v3.1', provider: 'smallest', type: 'tts',
  accounts: [{ account: 'smallest-tts', price: { perThousandChars: '0.0195' } }], aliases: ['lightning_v3.1'],
};
const stt: ModelConfig = {
  name: 'pulse', provider: 'smallest', type: 'stt',
  accounts: [{ account: 'smallest-stt', price: { perMinute: '0.0035', perMinuteStreaming: '0.006' } }], aliases: [],
};

/** A snapshot with Lightning (TTS) and Pulse (STT) priced as in examples/voicegate.yaml. */
export function testSnapshot(): Snapshot {
  return {
    version: 7,
    origin: 'test',
    issuers: [],
    providers: new Map([['smallest', { name: 'smallest', upstream: 'http://127.0.0.1:7070' }]]),
    // The accounts the models name: the edge admits against their units (core/limits).
    accounts: new Map([
      ['smallest-tts', { name: 'smallest-tts', provider: 'smallest', token: 'sk_test_tts', users: new Set(['alice']), teams: new Set<string>(), concurrency: 64, wsPerUnit: 5 }],
      ['smallest-stt', { name: 'smallest-stt', provider: 'smallest', token: 'sk_test_stt', users: new Set(['alice']), teams: new Set<string>(), concurrency: 64, wsPerUnit: 5 }],
    ]),
    models: new Map([['smallest', new Map([['lightning-v3.1', tts], ['lightning_v3.1', tts], ['pulse', stt]])]]),
    defaultModels: new Map(),
    maxDecisionBodyBytes: 65536,
  };
}

/** A sink that keeps spans in memory. */
export class MemorySink implements SpanSink {
  readonly spans: UsageSpan[] = [];
  publish(span: UsageSpan): void {
    this.spans.push(span);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

/** A valid span with overridable fields. */
export function makeSpan(over: Partial<UsageSpan> = {}): UsageSpan {
  return {
    schema: SPAN_SCHEMA,
    spanId: newSpanId(),
    traceId: randomBytes(16).toString('hex'),
    parentSpanId: '',
    source: 'edge',
    startTime: '2025-03-01T10:00:00.000Z',
    endTime: '2025-03-01T10:00:01.000Z',
    durationMs: 1000,
    method: 'POST',
    path: '/smallest/waves/v1/lightning-v3.1/get_speech',
    status: 200,
    decision: 'allow',
    user: 'alice',
    teams: ['voice'],
    provider: 'smallest',
    model: 'lightning-v3.1',
    modelType: 'tts',
    account: 'smallest-tts',
    routeKind: 'rest',
    endpoint: 'tts.sync',
    requestId: randomBytes(8).toString('hex'),
    providerRequestId: '',
    bytesIn: 100,
    bytesOut: 1000,
    characters: 100,
    estimated: false,
    costUsd: '0.00195',
    configVersion: 7,
    error: '',
    serverAddress: '127.0.0.1:7070',
    endedBy: 'upstream',
    ...over,
  };
}

export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/** A fresh PostgreSQL database for one test file; `drop()` removes it. */
export async function freshDatabase(): Promise<{ url: string; pool: pg.Pool; drop(): Promise<void> }> {
  const name = uniqueName('vg_test').toLowerCase();
  const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const a = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A 44-byte canonical WAV header followed by `dataBytes` of silence. */
export function wav(sampleRate: number, bitsPerSample: number, dataBytes: number, extraChunk = false): Uint8Array {
  const list = extraChunk ? 12 : 0;
  const b = Buffer.alloc(44 + list + dataBytes);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + list + dataBytes, 4);
  b.write('WAVE', 8);
  b.write('fmt ', 12);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(sampleRate, 24);
  b.writeUInt32LE((sampleRate * bitsPerSample) / 8, 28);
  b.writeUInt16LE(bitsPerSample / 8, 32);
  b.writeUInt16LE(bitsPerSample, 34);
  let off = 36;
  if (extraChunk) {
    b.write('LIST', off);
    b.writeUInt32LE(4, off + 4);
    b.write('INFO', off + 8);
    off += 12;
  }
  b.write('data', off);
  b.writeUInt32LE(dataBytes, off + 4);
  return b;
}

/** An exchange as the edge builds it at arrival, priced by {@link testSnapshot} unless overridden. */
export function testExchange(over: Partial<Exchange> = {}): Exchange {
  return {
    requestId: 'req-1',
    startedAtMs: Date.parse('2025-03-01T10:00:00Z'),
    startHr: process.hrtime.bigint(),
    method: 'POST',
    pathWithQuery: '/smallest/waves/v1/lightning-v3.1/get_speech',
    scheme: 'http',
    headers: { 'content-type': ['application/json'] },
    routeKind: 'rest',
    upgrade: false,
    snapshot: testSnapshot(),
    ...over,
  };
}

export function allowWith(metadata: DecisionMetadata): Allow {
  return { kind: 'allow', headersToSet: [], headersToRemove: [], queryParametersToRemove: [], metadata };
}

export function denyWith(metadata: DecisionMetadata): Deny {
  return { kind: 'deny', status: 403, code: 'not_entitled', message: 'no', headers: {}, metadata };
}
