/**
 * The publisher's pieces on their own: the NATS publisher never moves the key backwards, even with
 * several publishing at once (compare-and-set on the machine's NATS, a bucket per run); the
 * component keeps feeding a healthy sink while another fails, and keeps its last snapshot while
 * the store fails; GET /admin/v1/snapshot answers 503 before the first snapshot.
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminApp } from '../../extproc/adapters/admin-api/app.ts';
import { bootstrapAdmin } from '../../extproc/adapters/admin-api/bootstrap.ts';
import { mountSnapshotRoute } from '../../extproc/adapters/admin-api/snapshot-route.ts';
import { openPgliteControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { natsSnapshotPublisher } from '../../extproc/adapters/nats/snapshot-publisher.ts';
import { decodeDataPlanePayload } from '../../extproc/core/control/compile-data-plane.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { snapshotKvValue } from '../../extproc/core/control/snapshot-entry.ts';
import { IdentityVerifier } from '../../extproc/core/identity/identity.ts';
import { controlPublisherComponent } from '../../extproc/main/components/control-publisher.ts';

const NATS = 'nats://127.0.0.1:4222';
const silent = pino({ level: 'silent' });
const ring = () => new Keyring([{ id: 'k1', key: new Uint8Array(randomBytes(32)) }]);

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('natsSnapshotPublisher', () => {
  const bucket = `vg-pub-${randomBytes(4).toString('hex')}`;
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: NATS });
  });
  afterAll(async () => {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(`KV_${bucket}`).catch(() => undefined);
    await jsm.streams.delete(`OBJ_${bucket}-objects`).catch(() => undefined);
    await nc.close();
  });
  const inKv = async () => {
    const e = await (await nc.jetstream().views.kv(bucket, { bindOnly: true })).get('snapshot');
    return snapshotKvValue.parse(JSON.parse(e!.string()));
  };

  it('creates the buckets, writes inline, and never moves the key to an older revision, even racing', async () => {
    const a = natsSnapshotPublisher({ servers: NATS, bucket });
    const b = natsSnapshotPublisher({ servers: NATS, bucket });
    try {
      expect(await a.publish(5, '{"r":5}')).toEqual({ kind: 'inline', revision: 5, bytes: 7 });
      expect(await b.publish(4, '{"r":4}')).toEqual({ kind: 'skipped', revision: 4, inForce: 5 });
      expect(await b.publish(5, '{"r":5}')).toMatchObject({ kind: 'skipped', inForce: 5 });
      expect(await inKv()).toMatchObject({ revision: 5, payload: '{"r":5}' });

      // Two publishers, interleaved revisions, all at once: the newest wins whatever the order.
      const revisions = Array.from({ length: 20 }, (_, i) => 10 + i).sort(() => Math.random() - 0.5);
      const outcomes = await Promise.all(revisions.map((r, i) => (i % 2 ? a : b).publish(r, `{"r":${r}}`)));
      expect(await inKv()).toMatchObject({ revision: 29, payload: '{"r":29}' });
      expect(outcomes.find((o) => o.revision === 29)!.kind).toBe('inline');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a publish while NATS is unreachable fails (the component retries it) instead of hanging', async () => {
    const p = natsSnapshotPublisher({ servers: 'nats://127.0.0.1:1', bucket, timeoutMs: 500 });
    await expect(p.publish(1, '{}')).rejects.toThrow();
    await p.close();
  });
});

describe('controlPublisherComponent', () => {
  it('feeds a healthy sink every revision while another fails, keeps the last snapshot while the store fails, and publishes on nudge', async () => {
    const kek = ring();
    const snapshotKey = ring();
    const opened = await openPgliteControlStore({ keyring: kek });
    const { store } = opened;
    let storeDown = false;
    const flaky = {
      currentRevision: () => (storeDown ? Promise.reject(new Error('connection refused')) : store.currentRevision()),
      loadConfiguration: () => (storeDown ? Promise.reject(new Error('connection refused')) : store.loadConfiguration()),
    };
    const good: number[] = [];
    let failures = 0;
    const publisher = controlPublisherComponent({
      store: flaky,
      kek,
      snapshotKey,
      logger: silent,
      pollMs: 60_000, // only nudges: the test decides when the store is looked at
      retryMs: 5,
      maxRetryMs: 20,
      sinks: [
        { name: 'broken', deliver: async () => void (failures++, await Promise.reject(new Error('NATS down'))) },
        { name: 'memory', deliver: async (revision) => void good.push(revision) },
      ],
    });
    const seen: number[] = [];
    publisher.onPublish((s) => seen.push(s.revision));
    try {
      await publisher.start();
      const r0 = publisher.latest()!.revision;
      await store.createAccount({ name: 'acme', token: 'sk_component_test_0123456789' }, { actor: 'user:test' });
      publisher.nudge();
      await until(() => (publisher.latest()?.revision ?? -1) > r0, 'a newer revision built');
      const r1 = publisher.latest()!.revision;
      await until(() => good.includes(r1), 'the healthy sink got it');
      expect(failures).toBeGreaterThan(0);
      const payload = decodeDataPlanePayload(publisher.latest()!.text, { revision: r1 });
      expect(payload.accounts.map((a) => a.name)).toEqual(['acme']);
      expect(publisher.latest()!.text).not.toContain('sk_component_test');

      storeDown = true;
      publisher.nudge();
      await new Promise((r) => setTimeout(r, 50));
      expect(publisher.latest()!.revision).toBe(r1);
      storeDown = false;
      await store.createAccount({ name: 'beta' }, { actor: 'user:test' });
      publisher.nudge();
      await until(() => good.length > 0 && good[good.length - 1]! > r1, 'the healthy sink got the next one');
      expect(seen).toEqual([...new Set(seen)].sort((a, b) => a - b));
    } finally {
      await publisher.close();
      await opened.close();
    }
  });
});

describe('GET /admin/v1/snapshot', () => {
  it('answers 503 before the first snapshot, then 200 / 304, and 403 to a subject that is neither pod nor administrator', async () => {
    const opened = await openPgliteControlStore({ keyring: ring() });
    let latest: { revision: number; text: string } | undefined;
    const app = createAdminApp({ store: opened.store, verifier: new IdentityVerifier([]), mount: (a) => mountSnapshotRoute(a, { latest: () => latest, podSubjects: ['service:pods'] }) });
    try {
      const boot = (await bootstrapAdmin(opened.store))!;
      await opened.store.createServiceAccount({ name: 'pods' }, { actor: 'user:test' });
      const pods = (await opened.store.createServiceKey('pods', {}, { actor: 'user:test' })).plaintext;
      await opened.store.createServiceAccount({ name: 'app' }, { actor: 'user:test' });
      const other = (await opened.store.createServiceKey('app', {}, { actor: 'user:test' })).plaintext;
      const get = (key: string, headers: Record<string, string> = {}) => app.request('/admin/v1/snapshot', { headers: { authorization: `Bearer ${key}`, ...headers } });

      const none = await get(pods);
      expect(none.status).toBe(503);
      expect(none.headers.get('content-type')).toContain('problem+json');
      latest = { revision: 7, text: '{"format":1}' };
      const ok = await get(pods, { 'if-none-match': '"6"' });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('etag')).toBe('"7"');
      expect(await ok.text()).toBe('{"format":1}');
      expect((await get(pods, { 'if-none-match': 'W/"7"' })).status).toBe(304);
      expect((await get(boot.key)).status).toBe(200);
      expect((await get(other)).status).toBe(403);
      const doc = (await (await app.request('/admin/v1/openapi.json')).json()) as { paths: Record<string, unknown> };
      expect(doc.paths['/admin/v1/snapshot']).toBeDefined();
    } finally {
      await opened.close();
    }
  });
});
