/** Issue 9 point 14: process-level faults that must not take the gateway down or confuse an operator. */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FileSpanSink } from '../../extproc/adapters/files/file-sink.ts';
import { main } from '../../extproc/main/main.ts';
import { freshDatabase, makeSpan } from '../usage/helpers.ts';

describe('FileSpanSink that cannot open its file', () => {
  for (const [what, make] of [
    ['the spool dir is a file', (d: string) => (writeFileSync(join(d, 'spool'), 'x'), join(d, 'spool', 'spans.jsonl'))],
    ['the span file is a directory', (d: string) => (mkdirSync(join(d, 'spans.jsonl')), join(d, 'spans.jsonl'))],
  ] as const) {
    it(`logs once and keeps serving when ${what}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vg-fault-'));
      const lines: string[] = [];
      const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
      const rejections: unknown[] = [];
      const onRejection = (r: unknown) => rejections.push(r);
      process.on('unhandledRejection', onRejection);
      try {
        const sink = new FileSpanSink(make(dir), logger);
        sink.publish(makeSpan());
        sink.publish(makeSpan());
        await sink.flush();
        await new Promise((r) => setTimeout(r, 50));
        await sink.close();
      } finally {
        process.off('unhandledRejection', onRejection);
      }
      expect(rejections).toEqual([]);
      const errors = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level >= 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]!.msg).toContain('cannot be opened');
      // Per-request summary lines still appear.
      expect(lines.filter((l) => l.includes('"msg":"usage"'))).toHaveLength(2);
    });
  }
});

describe('voicegate usage on a fresh database', () => {
  it('says no usage was recorded yet instead of a missing relation', async () => {
    const db = await freshDatabase();
    try {
      let out = '';
      let err = '';
      const code = await main(['usage', '--database', db.url], new AbortController().signal, {
        stdout: (s) => void (out += s),
        stderr: (s) => void (err += s),
      });
      expect(err).not.toContain('does not exist');
      expect(code).toBe(0);
      expect(out).toContain('no usage recorded yet');
      out = '';
      expect(await main(['usage', '--database', db.url, '--json'], new AbortController().signal, { stdout: (s) => void (out += s), stderr: () => {} })).toBe(0);
      expect(JSON.parse(out).rows).toEqual([]);
    } finally {
      await db.drop();
    }
  });
});

describe('edge --authz-timeout', () => {
  it('makes the gRPC decision deadline configurable, 1 s by default', async () => {
    const { parseOptions } = await import('../../extproc/main/parse.ts');
    const { EDGE_OPTIONS } = await import('../../extproc/main/options.ts');
    const base = ['--config', 'examples/voicegate.yaml', '--authz', 'grpc://127.0.0.1:50051'];
    const dflt = parseOptions(EDGE_OPTIONS, base, {});
    const set = parseOptions(EDGE_OPTIONS, [...base, '--authz-timeout', '2s'], {});
    expect(dflt.ok && dflt.value.authzTimeout).toBe(1000);
    expect(set.ok && set.value.authzTimeout).toBe(2000);
  });
});

describe('GET /usage on the side port', () => {
  async function ask(access: { adminToken?: string }, remoteAddress: string, authorization?: string) {
    const { createUsageHttpHandler } = await import('../../extproc/adapters/postgres/usage-query.ts');
    // A pool that answers nothing: reaching it means the caller got past access control.
    const pool = { query: async () => ({ rows: [] }) } as unknown as import('pg').Pool;
    const handler = createUsageHttpHandler(pool, access);
    let status = 0;
    let body = '';
    const req = { url: '/usage?by=user', method: 'GET', headers: authorization ? { authorization } : {}, socket: { remoteAddress } };
    const res = { writeHead: (s: number) => void (status = s), end: (b: string) => void (body = b) };
    await handler(req as never, res as never);
    return { status, body };
  }

  it('answers loopback callers only when no admin token is configured', async () => {
    expect((await ask({}, '10.1.2.3')).status).toBe(403);
    expect((await ask({}, '::ffff:10.1.2.3')).status).toBe(403);
    expect((await ask({}, '127.0.0.1')).status).toBe(200);
    expect((await ask({}, '::1')).status).toBe(200);
  });

  it('requires the admin bearer token when one is configured, from any address', async () => {
    expect((await ask({ adminToken: 's3cret' }, '127.0.0.1')).status).toBe(401);
    expect((await ask({ adminToken: 's3cret' }, '10.1.2.3', 'Bearer wrong')).status).toBe(401);
    const ok = await ask({ adminToken: 's3cret' }, '10.1.2.3', 'Bearer s3cret');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).rows).toEqual([]);
  });
});
