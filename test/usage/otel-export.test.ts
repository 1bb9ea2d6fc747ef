/** Spans flow from JetStream through the OTel export consumer to a test OTLP/HTTP receiver. */
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tracesUrl } from '../../extproc/adapters/otel/span-exporter.ts';
import { startOtelExport } from '../../extproc/main/components/otel-export.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, makeSpan, silentLogger, uniqueName } from './helpers.ts';

interface OtlpAttr { key: string; value: Record<string, unknown> }
interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; startTimeUnixNano: string | number; endTimeUnixNano: string | number; attributes: OtlpAttr[]; status?: { code?: number } }

const NATS = 'nats://127.0.0.1:4222';
let nc: NatsConnection;
const stream = uniqueName('VGTEST_OTEL');
const tmp = mkdtempSync(join(tmpdir(), 'vg-otel-'));

beforeAll(async () => {
  nc = await connect({ servers: NATS });
});
afterAll(async () => {
  await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
  await nc.close();
  rmSync(tmp, { recursive: true, force: true });
});

const readBody = (req: IncomingMessage) => new Promise<string>((resolve) => {
  let b = '';
  req.on('data', (c) => (b += c));
  req.on('end', () => resolve(b));
});

describe('OTel export', () => {
  it('delivers spans with their own ids, times and attributes to an OTLP/HTTP receiver', async () => {
    const received: OtlpSpan[] = [];
    let failFirst = true;
    const server = createServer(async (req, res) => {
      const body = await readBody(req);
      if (req.url !== '/v1/traces') { res.writeHead(404); res.end(); return; }
      if (failFirst) {
        // The first delivery fails: the batch must be redelivered, not lost.
        failFirst = false;
        res.writeHead(503); res.end(); return;
      }
      const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) received.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;

    const subjectPrefix = `${stream.toLowerCase()}.spans`;
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: tmp, logger: silentLogger, name: stream, subjectPrefix });
    await sink.ready();
    const a = makeSpan({ parentSpanId: '00f067aa0ba902b7', characters: 42, costUsd: '0.000819', teams: ['ops', 'voice'] });
    const b = makeSpan({ model: 'pulse', modelType: 'stt', characters: undefined, audioSeconds: 2.5, status: 500, error: 'upstream_reset' });
    sink.publish(a);
    sink.publish(b);
    await sink.flush();

    const exp = await startOtelExport({ nc, endpoint: tracesUrl(`http://127.0.0.1:${port}`), logger: silentLogger, name: stream, subjectPrefix, durable: uniqueName('otel'), ackWaitMs: 2000 });
    await eventually(() => received.length >= 2, 20_000, 'OTLP spans');
    await exp.stop();
    server.close();
    await sink.close();

    expect(received).toHaveLength(2);
    const got = new Map(received.map((s) => [s.spanId, s]));
    const sa = got.get(a.spanId.slice(0, 16))!;
    expect(sa.traceId).toBe(a.traceId);
    expect(sa.parentSpanId).toBe('00f067aa0ba902b7');
    expect(String(sa.startTimeUnixNano)).toBe(String(BigInt(Date.parse(a.startTime)) * 1_000_000n));
    const attrs = Object.fromEntries(sa.attributes.map((x) => [x.key, Object.values(x.value)[0]]));
    expect(attrs).toMatchObject({
      'http.request.method': 'POST', 'http.response.status_code': 200, 'url.path': a.path, 'server.address': '127.0.0.1:7070',
      'gen_ai.system': 'smallest', 'gen_ai.request.model': 'lightning-v3.1', 'gen_ai.operation.name': 'text_to_speech',
      'voicegate.user': 'alice', 'voicegate.account': 'smallest-tts', 'voicegate.characters': 42, 'voicegate.cost_usd': '0.000819',
    });
    expect(JSON.stringify(attrs['voicegate.teams'])).toContain('voice');
    const sb = got.get(b.spanId.slice(0, 16))!;
    const battrs = Object.fromEntries(sb.attributes.map((x) => [x.key, Object.values(x.value)[0]]));
    expect(battrs).toMatchObject({ 'gen_ai.operation.name': 'speech_to_text', 'voicegate.audio_seconds': 2.5, 'error.type': 'upstream_reset' });
    // Who ended the exchange travels as its own attribute (makeSpan's default: the provider finished).
    expect(attrs['voicegate.ended_by']).toBe('upstream');
    expect(sb.status?.code).toBe(2);
  });
});
