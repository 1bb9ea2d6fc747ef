/**
 * Issue 10: one billing rule for exchanges cut mid-stream, through a real edge. An upstream that
 * answered 2xx (or 101) and then died mid-body is billed for what the meter counted, REST, SSE and
 * WebSocket alike, and the span says how it ended.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import type { Authorizer, CheckInput, Decision, DecisionMetadata } from '../../extproc/core/decision/types.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import { startUpstream, until } from '../edge/helpers.ts';
import { MemorySink, testSnapshot } from './helpers.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const BASE: DecisionMetadata = { user: 'alice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts', account: 'smallest-tts', config_version: 7 };

/** Allows every path with the metadata its route kind needs; 100 characters for REST and SSE. */
class CutAuthorizer implements Authorizer {
  async check(input: CheckInput): Promise<Decision> {
    const path = input.path.split('?')[0]!;
    const md: DecisionMetadata = path.endsWith('/get_speech/stream')
      ? { ...BASE, route_kind: 'websocket', endpoint: 'tts.ws' }
      : path.endsWith('/stream')
        ? { ...BASE, route_kind: 'sse', endpoint: 'tts.sse', characters: 100 }
        : { ...BASE, route_kind: 'rest', endpoint: 'tts.sync', characters: 100 };
    return {
      kind: 'allow',
      headersToSet: [{ key: 'authorization', value: 'Bearer sk_provider' }],
      headersToRemove: [],
      queryParametersToRemove: [],
      metadata: { ...md, upstream_path: path.replace(/^\/smallest/, '') },
    };
  }
}

async function setup() {
  const upstream = await startUpstream(
    (req, res) => {
      req.resume();
      req.on('end', () => {
        const sse = req.url?.endsWith('/stream');
        res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'audio/wav' });
        res.write(sse ? 'event: audio\ndata: {"audio":"AAAA","done":false}\n\n' : 'RIFF....WAVE');
        // The provider dies mid-body: no final chunk, no `done` event.
        setTimeout(() => res.socket?.destroy(), 30);
      });
    },
    (ws) => {
      ws.once('message', () => {
        ws.send(JSON.stringify({ status: 'chunk', data: { audio: 'AAAA' } }));
        setTimeout(() => ws.terminate(), 30);
      });
    },
  );
  const sink = new MemorySink();
  const edge = await startEdge({
    host: '127.0.0.1',
    port: 0,
    source: new StaticSnapshotSource({ ...testSnapshot(), providers: new Map([['smallest', { name: 'smallest', upstream: upstream.url }]]) }),
    authorizer: new CutAuthorizer(),
    observe: createUsageObserverFactory({ sink }),
  });
  cleanups.push(() => upstream.close(), () => edge.close());
  return { edge, sink };
}

// 100 characters at lightning-v3.1's 0.0195 per 1,000 (test/usage/helpers.ts).
const COST = '0.00195';

describe('exchanges cut mid-stream by the provider', () => {
  it('REST: billed, error upstream_reset', async () => {
    const { edge, sink } = await setup();
    const res = await fetch(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, { method: 'POST', body: '{"text":"x"}' });
    expect(res.status).toBe(200);
    await res.arrayBuffer().catch(() => undefined);
    await until(() => sink.spans.length === 1, 3000, 'span');
    expect(sink.spans[0]).toMatchObject({ status: 200, error: 'upstream_reset', characters: 100, costUsd: COST });
  });

  it('SSE: billed, error upstream_reset', async () => {
    const { edge, sink } = await setup();
    const res = await fetch(`${edge.url}/smallest/waves/v1/lightning-v3.1/stream`, { method: 'POST', body: '{"text":"x"}' });
    expect(res.status).toBe(200);
    await res.text().catch(() => undefined);
    await until(() => sink.spans.length === 1, 3000, 'span');
    expect(sink.spans[0]).toMatchObject({ status: 200, error: 'upstream_reset', characters: 100, costUsd: COST });
  });

  it('WebSocket: billed for the text sent, the abnormal close recorded', async () => {
    const { edge, sink } = await setup();
    const ws = new WebSocket(`${edge.url.replace('http:', 'ws:')}/smallest/waves/v1/lightning-v3.1/get_speech/stream`);
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(JSON.stringify({ text: 'x'.repeat(100), voice_id: 'magnus' }));
    await new Promise((r) => ws.once('close', r));
    await until(() => sink.spans.length === 1, 3000, 'span');
    expect(sink.spans[0]).toMatchObject({ status: 101, characters: 100, costUsd: COST });
    expect(sink.spans[0]!.closeCode).not.toBe(1000);
  });
});
