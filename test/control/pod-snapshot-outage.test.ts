/**
 * Issue 11 point 7, the pod side through a NATS outage: a PRIVATE nats-server (never the
 * machine's shared one) is killed while a pod follows the snapshot; the pod falls back to the
 * control plane's HTTP endpoint, and when NATS returns its watch is live again and delivers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type KV, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateNats } from '../setup/private-nats.ts';
import { payloadSha256 } from '../../extproc/core/control/compile-data-plane.ts';
import { snapshotTokenBinding, type DataPlaneSnapshot } from '../../extproc/core/control/data-plane.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { loadLocalConfigFile } from '../../extproc/adapters/files/local-config.ts';
import { controlSnapshotComponent, type SnapshotEvent } from '../../extproc/main/components/control-snapshot.ts';
import { EXAMPLES_DIR } from '../e2e/stack.ts';

const TOKEN = `sk_${randomBytes(12).toString('hex')}`;
const keys = new Keyring([{ id: 'k', key: new Uint8Array(randomBytes(32)) }]);
const podToken = randomBytes(16).toString('hex');
let dir: string;
let nats: PrivateNats;


async function until(probe: () => boolean | Promise<boolean>, what: string, deadlineMs = 20_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never: ${what}`);
}



function payload(revision: number, users: string[]): DataPlaneSnapshot {
  const s = keys.seal(TOKEN, snapshotTokenBinding('acct', revision));
  return {
    format: 1,
    revision,
    published_at: new Date().toISOString(),
    accounts: [{ name: 'acct', provider: 'smallest', base_url: null, concurrency_units: 1, ws_per_unit: 5, token: { algorithm: s.algorithm, kek_id: s.kekId, wrapped_key: Buffer.from(s.wrappedKey).toString('base64'), ciphertext: Buffer.from(s.ciphertext).toString('base64') } }],
    collaborators: users.map((u) => ({ account: 'acct', subject: `user:${u}`, role: 'user' as const })),
    models: [{ account: 'acct', model_id: 'lightning-v3.1', type: 'tts', aliases: [], price: {} }],
    team_members: [],
    service_keys: [],
  };
}

async function put(kv: KV, p: DataPlaneSnapshot): Promise<void> {
  const text = JSON.stringify(p);
  await kv.put('snapshot', JSON.stringify({ revision: p.revision, sha256: payloadSha256(text), payload: text }));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-pod-outage-'));
  nats = await PrivateNats.create(join(dir, 'js'));
  await nats.start();
});

afterAll(async () => {
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a pod following the snapshot through a NATS outage', () => {
  it('falls back to HTTP while NATS is away and follows KV again once it is back', async () => {
    const config = join(dir, 'pod.yaml');
    await writeFile(config, ['version: 1', 'identity:', '  issuers:', '    - issuer: https://voicegate.local/dev', '      audiences: [voicegate]', `      jwks: file:${join(EXAMPLES_DIR, 'dev/jwks.json')}`, 'providers:', '  smallest: { upstream: "http://127.0.0.1:9" }', ''].join('\n'));
    let current = payload(1, ['alice']);
    const httpServed: number[] = [];
    const http: Server = createHttpServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${podToken}`) return void res.writeHead(401).end();
      if (req.headers['if-none-match'] === `"${current.revision}"`) return void res.writeHead(304).end();
      httpServed.push(current.revision);
      res.writeHead(200, { etag: `"${current.revision}"`, 'content-type': 'application/json' }).end(JSON.stringify(current));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const controlUrl = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    const bucket = `vg-config-outage-${randomBytes(3).toString('hex')}`;
    let nc: NatsConnection = await connect({ servers: nats.url });
    let kv = await nc.jetstream().views.kv(bucket, { history: 1, replicas: 1 });
    await put(kv, current);

    const events: SnapshotEvent[] = [];
    const c = controlSnapshotComponent({
      local: await loadLocalConfigFile(config),
      keyring: keys,
      nats: { servers: nats.url, bucket },
      http: { controlUrl, podToken },
      pollMs: 100,
      cachePath: join(dir, 'copy.enc'),
      logger: pino({ level: 'silent' }),
      onEvent: (e) => events.push(e),
    });
    try {
      await c.start();
      expect(c.revision).toBe(1);
      expect(c.natsUp).toBe(true);
      // Start asks both at once; after that the control plane is polled only while NATS is away.
      expect(httpServed.length).toBeLessThanOrEqual(1);

      await nc.close();
      await nats.stop();
      await until(() => !c.natsUp, 'the pod notices NATS is gone');
      current = payload(2, ['bob']);
      await until(() => c.revision === 2, 'revision 2 over HTTP');
      expect(events.find((e) => e.type === 'swapped' && e.revision === 2)).toEqual({ type: 'swapped', revision: 2, from: 'http' });
      expect([...c.source.current()!.accounts.get('acct')!.users]).toEqual(['bob']);

      await nats.start();
      await until(() => c.natsUp, 'the watch is live again');
      nc = await connect({ servers: nats.url });
      kv = await nc.jetstream().views.kv(bucket, { history: 1, replicas: 1 });
      await put(kv, payload(3, ['carol']));
      await until(() => c.revision === 3, 'revision 3 over NATS after the outage');
      expect(events.find((e) => e.type === 'swapped' && e.revision === 3)).toEqual({ type: 'swapped', revision: 3, from: 'nats' });
    } finally {
      await c.close();
      await nc.close();
      await new Promise<void>((r) => http.close(() => r()));
    }
  });
});
