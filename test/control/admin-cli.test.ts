/**
 * `voicegate admin …` and `voicegate apply …` as a user runs them, in process through main() with
 * captured stdout and stderr, against a real `voicegate control` on a fresh PostgreSQL database
 * (PGlite's start takes a minute on a loaded machine) that this file starts: the README's three steps in tables and as JSON, teams, service keys (a
 * minted key authenticates as service:ci), the audit log, apply's dry run and real run, and the
 * failures — one line on stderr, exit 2 for what never reached the API, 1 for what it refused.
 * No provider token ever shows in any output.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate as migrateUsage } from '../../extproc/adapters/postgres/migrations.ts';
import { main } from '../../extproc/main/main.ts';
import { freshDatabase } from '../usage/helpers.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'vg-admin-cli-'));

const FILE_TOKEN = 'sk_cli_from_file_5f1e0c9a77d2';
const STDIN_TOKEN = 'sk_cli_from_stdin_0b8d2e41c6aa';
/** The token `apply` makes the control plane read (file: reference beside examples/voicegate.yaml). */
const APPLIED_TOKEN = readFileSync(join(ROOT, 'examples/dev/smallest-stt.key'), 'utf8').trim();
const ARG_TOKEN = 'sk_cli_as_argument_93ab71d0';

/** Every byte any command (control included) wrote, for the final no-secret check. */
const written: string[] = [];

let controlUrl = '';
let adminKey = '';
let control: { stop(): Promise<number> } | undefined;
let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function* chunks(text: string): AsyncIterable<string> {
  yield text;
}

/** One `voicegate …` run; the admin bearer is the bootstrap key unless `token` says otherwise. */
async function vg(args: string[], o: { token?: string; stdin?: string; env?: Record<string, string> } = {}): Promise<Result> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const env = { VOICEGATE_CONTROL_URL: controlUrl, VOICEGATE_ADMIN_TOKEN: o.token ?? adminKey, ...o.env };
  const code = await main(args, new AbortController().signal, {
    env,
    stdin: chunks(o.stdin ?? ''),
    stdout: (s) => void stdout.push(s),
    stderr: (s) => void stderr.push(s),
  });
  written.push(...stdout, ...stderr);
  return { code, stdout: stdout.join(''), stderr: stderr.join('') };
}

/** A successful run's stdout (its stderr in the failure message). */
async function ok(args: string[], o?: Parameters<typeof vg>[1]): Promise<string> {
  const r = await vg(args, o);
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  expect(r.stderr).toBe('');
  return r.stdout;
}

async function okJson<T = Record<string, unknown>>(args: string[], o?: Parameters<typeof vg>[1]): Promise<T> {
  return JSON.parse(await ok([...args, '--json'], o)) as T;
}

/** A failed run: its code, and its stderr's lines. */
async function fails(args: string[], o?: Parameters<typeof vg>[1]): Promise<{ code: number; lines: string[]; stdout: string }> {
  const r = await vg(args, o);
  expect(r.code, r.stdout).not.toBe(0);
  return { code: r.code, lines: r.stderr.split('\n').filter(Boolean), stdout: r.stdout };
}

interface Items<T> {
  items: T[];
  next_cursor: null;
}

beforeAll(async () => {
  const tokenFile = join(dir, 'acme.key');
  writeFileSync(tokenFile, `${FILE_TOKEN}\n`, { mode: 0o600 });
  const ac = new AbortController();
  const stdout: string[] = [];
  let gotUrl!: (u: string) => void;
  const url = new Promise<string>((r) => (gotUrl = r));
  db = await freshDatabase();
  // DROP DATABASE … WITH (FORCE) at teardown terminates idle pooled connections (57P01).
  db.pool.on('error', (err: Error & { code?: string }) => {
    if (err.code !== '57P01') throw err;
  });
  // The usage tables, as the aggregator creates them (the control plane only reads them).
  await migrateUsage(db.pool);
  const args = ['control', '--listen', '127.0.0.1:0', '--database', db.url, '--config', join(ROOT, 'examples/voicegate.yaml')];
  // service:ci is an administrator too, so the key the test mints can make admin calls.
  args.push('--admin-subject', 'service:bootstrap-admin', '--admin-subject', 'service:ci');
  const done = main(args, ac.signal, {
    env: {
      VOICEGATE_KEK: `k1:${randomBytes(32).toString('base64')}`,
      VOICEGATE_SNAPSHOT_KEY: `s1:${randomBytes(32).toString('base64')}`,
      // Its info lines (snapshot built …) go to the process's stdout, past this capture.
      LOG_LEVEL: 'warn',
    },
    stdout: (s) => void (stdout.push(s), written.push(s)),
    stderr: (s) => {
      written.push(s);
      const m = /admin API on (http:\/\/[^\s]+)\/admin\/v1 /.exec(s);
      if (m) gotUrl(m[1]!);
    },
  });
  void done.then(() => gotUrl(''));
  controlUrl = await url;
  expect(controlUrl, written.join('')).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  adminKey = /\b(vg_[A-Za-z0-9_-]{43})\b/.exec(stdout.join(''))?.[1] ?? '';
  expect(adminKey).not.toBe('');
  control = { stop: async () => (ac.abort(), done) };
}, 60_000);

afterAll(async () => {
  expect(await control?.stop()).toBe(0);
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('voicegate admin: the three steps', () => {
  it('creates accounts with the provider token from a file and from stdin, in a table and as JSON', async () => {
    const created = await ok(['admin', 'accounts', 'create', 'acme-tts', '--units', '2', '--provider-token-file', join(dir, 'acme.key')]);
    expect(created).toMatch(/^created account acme-tts\n/);
    expect(created).toMatch(/^concurrency_units +2$/m);
    expect(created).toMatch(new RegExp(`^token +set, …${FILE_TOKEN.slice(-4)}, fingerprint \\S+$`, 'm'));

    const fromStdin = await okJson<{ name: string; concurrency_units: number; secret: { set: boolean; last4: string } }>(
      ['admin', 'accounts', 'create', 'acme-stt', '--provider-token-file', '-'],
      { stdin: `${STDIN_TOKEN}\n` },
    );
    expect(fromStdin).toMatchObject({ name: 'acme-stt', secret: { set: true, last4: STDIN_TOKEN.slice(-4) } });
    expect(Object.keys(fromStdin)).not.toContain('token');

    const table = (await ok(['admin', 'accounts', 'list'])).split('\n');
    expect(table[0]).toMatch(/^NAME +PROVIDER +UNITS +WS\/UNIT +BASE URL +TOKEN +VERSION$/);
    expect(table.find((l) => l.startsWith('acme-tts '))).toMatch(new RegExp(`^acme-tts +smallest +2 +5 +- +…${FILE_TOKEN.slice(-4)} +1$`));
    const list = await okJson<Items<{ name: string }>>(['admin', 'accounts', 'list']);
    expect(list.items.map((a) => a.name).sort()).toEqual(['acme-stt', 'acme-tts']);
    expect(list.next_cursor).toBeNull();
    expect(await okJson(['admin', 'accounts', 'get', 'acme-tts'])).toMatchObject({ name: 'acme-tts', concurrency_units: 2, secret: { set: true } });
  });

  it('adds, lists and removes collaborators', async () => {
    expect(await ok(['admin', 'collaborators', 'add', 'acme-tts', 'user:carol'])).toMatch(/^created collaborator user:carol \(user\) of acme-tts\n/);
    expect(await okJson(['admin', 'collaborators', 'add', 'acme-tts', 'team:voice', '--role', 'manager'])).toMatchObject({ account: 'acme-tts', subject: 'team:voice', role: 'manager' });
    // The same entry again is not an error.
    expect(await ok(['admin', 'collaborators', 'add', 'acme-tts', 'user:carol'])).toMatch(/^collaborator user:carol \(user\) of acme-tts exists, identical: nothing changed\n/);

    const table = (await ok(['admin', 'collaborators', 'list', 'acme-tts'])).split('\n');
    expect(table[0]).toMatch(/^ACCOUNT +SUBJECT +ROLE +VERSION$/);
    expect(table).toContainEqual(expect.stringMatching(/^acme-tts +user:carol +user +\d+$/));
    expect(table).toContainEqual(expect.stringMatching(/^acme-tts +team:voice +manager +\d+$/));

    expect(await ok(['admin', 'collaborators', 'remove', 'acme-tts', 'user:carol'])).toBe('removed collaborator user:carol from acme-tts\n');
    const after = await okJson<Items<{ subject: string; role: string }>>(['admin', 'collaborators', 'list', 'acme-tts']);
    expect(after.items.map((c) => `${c.subject}=${c.role}`)).toEqual(['team:voice=manager']);
    expect(await ok(['admin', 'collaborators', 'list', 'acme-stt'])).toBe('no collaborators\n');
  });

  it('adds, lists and updates models', async () => {
    const added = await ok(['admin', 'models', 'add', 'acme-tts', 'lightning-v3.1', '--type', 'tts', '--alias', 'lightning_v3.1', '--price-per-thousand-chars', '0.0195']);
    expect(added).toMatch(/^created model lightning-v3.1 of acme-tts\n/);
    expect(added).toMatch(/^acme-tts +lightning-v3.1 +tts +lightning_v3.1 +0.0195\/1k chars +1$/m);
    await ok(['admin', 'models', 'add', 'acme-stt', 'lightning-asr', '--type', 'stt', '--price-per-minute', '0.01']);

    const table = (await ok(['admin', 'models', 'list'])).split('\n');
    expect(table[0]).toMatch(/^ACCOUNT +MODEL +TYPE +ALIASES +PRICE +VERSION$/);
    expect(table).toContainEqual(expect.stringMatching(/^acme-stt +lightning-asr +stt +- +0.01\/min +1$/));
    const one = await okJson<Items<{ model_id: string; type: string; aliases: string[]; price: Record<string, string> }>>(['admin', 'models', 'list', '--account', 'acme-tts']);
    expect(one.items).toEqual([expect.objectContaining({ model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price: { per_1k_chars: '0.0195' } })]);

    const updated = await okJson(['admin', 'models', 'update', 'acme-tts', 'lightning-v3.1', '--max-session-seconds', '600']);
    expect(updated).toMatchObject({ model_id: 'lightning-v3.1', max_session_seconds: 600, version: 2, aliases: ['lightning_v3.1'] });
    expect(await okJson(['admin', 'models', 'update', 'acme-tts', 'lightning-v3.1', '--max-session-seconds', 'none'])).toMatchObject({ max_session_seconds: null, version: 3 });
  });
});

describe('voicegate admin: teams', () => {
  it('creates a team, adds and removes a member, deletes it', async () => {
    expect(await ok(['admin', 'teams', 'create', 'studio', '--description', 'the studio people'])).toMatch(/^created team studio\n/);
    expect(await ok(['admin', 'teams', 'add-member', 'studio', 'alice'])).toMatch(/^added alice to team studio\n/);
    expect(await ok(['admin', 'teams', 'add-member', 'studio', 'alice'])).toMatch(/^alice is already a member of studio\n/);
    await ok(['admin', 'teams', 'add-member', 'studio', 'corp:dave']);
    const members = await okJson<Items<{ team: string; member: string }>>(['admin', 'teams', 'members', 'studio']);
    expect(members.items.map((m) => m.member).sort()).toEqual(['alice', 'corp:dave']);
    const table = (await ok(['admin', 'teams', 'list'])).split('\n');
    expect(table[0]).toMatch(/^NAME +DESCRIPTION +VERSION$/);
    expect(table).toContainEqual(expect.stringMatching(/^studio +the studio people +1$/));

    expect(await ok(['admin', 'teams', 'remove-member', 'studio', 'alice'])).toBe('removed alice from team studio\n');
    expect((await okJson<Items<{ member: string }>>(['admin', 'teams', 'members', 'studio'])).items.map((m) => m.member)).toEqual(['corp:dave']);
    expect(await ok(['admin', 'teams', 'delete', 'studio'])).toBe('deleted team studio with its members\n');
    expect(await ok(['admin', 'teams', 'list'])).toBe('no teams\n');
  });
});

describe('voicegate admin: service keys and the audit log', () => {
  it('mints a key (--quiet: the key alone) that authenticates as service:ci, rotates and revokes it', async () => {
    expect(await ok(['admin', 'service-keys', 'create-account', 'ci', '--description', 'pipeline'])).toMatch(/^created service account ci \(service:ci\)\n/);
    const accounts = (await ok(['admin', 'service-keys', 'accounts'])).split('\n');
    expect(accounts).toContainEqual(expect.stringMatching(/^ci +service:ci +pipeline$/));
    expect(accounts).toContainEqual(expect.stringMatching(/^bootstrap-admin +service:bootstrap-admin /));

    const quiet = await ok(['admin', 'service-keys', 'create', 'ci', '--quiet']);
    expect(quiet).toMatch(/^vg_[A-Za-z0-9_-]{43}\n$/);
    const first = quiet.trim();
    // The key is the bearer of the next call, and that call's audit actor is service:ci.
    expect(await ok(['admin', 'teams', 'create', 'from-ci'], { token: first })).toMatch(/^created team from-ci\n/);
    const audit = await okJson<Items<{ actor: string; action: string; resource: string; resource_key: string }>>(['admin', 'audit', 'list', '--resource', 'team']);
    expect(audit.items).toContainEqual(expect.objectContaining({ actor: 'service:ci', resource: 'team', resource_key: 'from-ci' }));

    const keys = await okJson<Items<{ id: string; hint: string; revoked_at: string | null }>>(['admin', 'service-keys', 'list', 'ci']);
    expect(keys.items).toHaveLength(1);
    const id = keys.items[0]!.id;
    expect(first).toContain(keys.items[0]!.hint.replace(/…/g, ''));
    const keyTable = (await ok(['admin', 'service-keys', 'list', 'ci'])).split('\n');
    expect(keyTable[0]).toMatch(/^ID +HINT +CREATED +EXPIRES +GRACE UNTIL +REVOKED +REPLACED BY$/);
    expect(keyTable[1]).toMatch(new RegExp(`^${id} `));

    // Not quiet: a status line, and the key shown once, indented on its own line.
    const rotated = await ok(['admin', 'service-keys', 'rotate', 'ci', id, '--grace', '0']);
    expect(rotated).toMatch(new RegExp(`^rotated key ${id} of service:ci, which keeps working 0s more; the new key \\(id \\S+, hint \\S+, expires never\\)\\. The key, shown this once:\\n\\n {4}vg_[A-Za-z0-9_-]{43}\\n\\n$`));
    const second = /\n {4}(vg_\S+)\n/.exec(rotated)![1]!;
    const old = await fails(['admin', 'accounts', 'list'], { token: first });
    expect(old.code).toBe(1);
    expect(old.lines).toEqual(['voicegate admin: Unauthorized: the service key is unknown, revoked or expired']);
    expect(await ok(['admin', 'accounts', 'list'], { token: second })).toMatch(/^NAME /);

    const issued = await okJson<{ id: string; key: string; replaces: string }>(['admin', 'service-keys', 'rotate', 'ci', (await okJson<Items<{ id: string; revoked_at: string | null; replaced_by: string | null }>>(['admin', 'service-keys', 'list', 'ci'])).items.find((k) => k.replaced_by === null)!.id]);
    expect(issued.key).toMatch(/^vg_/);
    expect(await ok(['admin', 'service-keys', 'revoke', 'ci', issued.id])).toBe(`revoked key ${issued.id} of service account ci\n`);
    const revoked = await fails(['admin', 'teams', 'list'], { token: issued.key });
    expect(revoked.code).toBe(1);
    expect(revoked.lines).toEqual(['voicegate admin: Unauthorized: the service key is unknown, revoked or expired']);
  });

  it('lists the audit log as a table, filtered by resource and key', async () => {
    const table = (await ok(['admin', 'audit', 'list'])).split('\n').filter(Boolean);
    expect(table[0]).toMatch(/^ID +REVISION +AT +ACTOR +ACTION +RESOURCE +KEY$/);
    expect(table).toContainEqual(expect.stringMatching(/ service:bootstrap-admin +account\.create +account +acme-tts$/));
    expect(table).toContainEqual(expect.stringMatching(/ service:ci +team\.create +team +from-ci$/));
    const byKey = await okJson<Items<{ resource: string; resource_key: string }>>(['admin', 'audit', 'list', '--resource', 'account', '--resource-key', 'acme-stt']);
    expect(byKey.items.length).toBeGreaterThan(0);
    expect(new Set(byKey.items.map((e) => `${e.resource} ${e.resource_key}`))).toEqual(new Set(['account acme-stt']));
    // `audit` alone is `audit list`.
    expect(await ok(['admin', 'audit', '--resource', 'service_key'])).toMatch(/^ID +REVISION/);
  });
});

describe('voicegate admin: usage', () => {
  it('rolls up usage by account (none recorded here), as a line and as JSON', async () => {
    expect(await ok(['admin', 'usage', '--by', 'account', '--from', '2026-01-01', '--to', '2026-01-31'])).toBe('usage by account, 2026-01-01 to 2026-01-31\nno usage recorded\n');
    expect(await okJson(['admin', 'usage'])).toMatchObject({ by: 'user', rows: [] });
    const backwards = await fails(['admin', 'usage', '--from', '2026-02-01', '--to', '2026-01-01']);
    expect(backwards.lines).toEqual(['voicegate admin: Bad Request: from: must not be after to (field from)']);
    expect(backwards.code).toBe(1);
  });
});

describe('voicegate admin: failures', () => {
  it('an unknown account: one line, exit 1', async () => {
    for (const args of [
      ['admin', 'accounts', 'get', 'nope'],
      ['admin', 'collaborators', 'list', 'nope'],
      ['admin', 'models', 'add', 'nope', 'm1', '--type', 'tts'],
    ]) {
      const r = await fails(args);
      expect(r.code).toBe(1);
      expect(r.lines).toHaveLength(1);
      expect(r.lines[0]).toMatch(/^voicegate admin: Not Found: account "nope" does not exist$/);
      expect(r.stdout).toBe('');
    }
  });

  it('bad input: a flag the CLI checks is a usage error (2), a value the API checks is refused (1); each names the field', async () => {
    const units = await fails(['admin', 'accounts', 'create', 'bad', '--units', '0']);
    expect(units.code).toBe(2);
    expect(units.lines[0]).toBe('voicegate admin: --units must be a positive integer');
    expect(units.lines[1]).toMatch(/^usage: voicegate admin accounts create NAME /);

    const subject = await fails(['admin', 'collaborators', 'add', 'acme-tts', 'carol']);
    expect(subject.code).toBe(1);
    expect(subject.lines).toEqual([expect.stringMatching(/^voicegate admin: Bad Request: subject: must be user:<name>, team:<name> or service:<name> \(field subject\)$/)]);

    const price = await fails(['admin', 'models', 'add', 'acme-tts', 'm1', '--type', 'tts', '--price-per-thousand-chars', 'cheap']);
    expect(price.code).toBe(1);
    expect(price.lines).toEqual([expect.stringMatching(/^voicegate admin: Bad Request: .*\(field price\.per_1k_chars\)$/)]);

    const type = await fails(['admin', 'models', 'add', 'acme-tts', 'm1', '--type', 'tts2']);
    expect(type.code).toBe(2);
    expect(type.lines[0]).toBe('voicegate admin: --type must be tts or stt');

    const foreign = await fails(['admin', 'accounts', 'list', '--units', '0']);
    expect(foreign.code).toBe(2);
    expect(foreign.lines[0]).toBe('voicegate admin: accounts list does not take --units');

    const action = await fails(['admin', 'accounts', 'frobnicate']);
    expect(action.code).toBe(2);
    expect(action.lines[0]).toMatch(/^voicegate admin: unknown action "accounts frobnicate"; one of: accounts list, /);

    const noBearer = await fails(['admin', 'accounts', 'list'], { token: '' });
    expect(noBearer.code).toBe(2);
    expect(noBearer.lines).toEqual([expect.stringMatching(/^voicegate admin: no admin credential: /)]);

    // None of these created anything.
    expect((await fails(['admin', 'accounts', 'get', 'bad'])).code).toBe(1);
    expect((await okJson<Items<{ model_id: string }>>(['admin', 'models', 'list', '--account', 'acme-tts'])).items.map((m) => m.model_id)).toEqual(['lightning-v3.1']);
  });

  it("a plain user's token: 403, one line, exit 1; a manager of an account may read it", async () => {
    const jwt = (await ok(['token', '--config', join(ROOT, 'examples/voicegate.yaml'), '--user', 'mallory'])).trim();
    const r = await fails(['admin', 'accounts', 'list'], { token: jwt });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual(['voicegate admin: Forbidden: this needs an administrator']);
    const other = await fails(['admin', 'collaborators', 'add', 'acme-tts', 'user:mallory', '--role', 'manager'], { token: jwt });
    expect(other.lines).toEqual(['voicegate admin: Forbidden: this needs an administrator or a manager of account "acme-tts"']);

    await ok(['admin', 'collaborators', 'add', 'acme-tts', 'user:mallory', '--role', 'manager']);
    expect(await ok(['admin', 'collaborators', 'list', 'acme-tts'], { token: jwt })).toMatch(/user:mallory +manager/);
    expect((await fails(['admin', 'accounts', 'update', 'acme-tts', '--units', '9'], { token: jwt })).lines).toEqual(['voicegate admin: Forbidden: this needs an administrator']);
    await ok(['admin', 'collaborators', 'remove', 'acme-tts', 'user:mallory']);
  });

  it('a stale read-modify-write (412) is reported as such and overwrites nothing', async () => {
    // A proxy in front of the control plane changes the account between the CLI's read and write.
    let raced = 0;
    const proxy: Server = createServer((req, res) => {
      const body: Buffer[] = [];
      req.on('data', (c: Buffer) => body.push(c));
      req.on('end', () => {
        void (async () => {
          const headers: Record<string, string> = {};
          for (const h of ['authorization', 'content-type', 'if-match', 'accept']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
          const upstream = await fetch(`${controlUrl}${req.url}`, { method: req.method, headers, ...(body.length ? { body: Buffer.concat(body) } : {}) });
          const text = await upstream.text();
          if (req.method === 'GET' && req.url === '/admin/v1/accounts/acme-tts' && raced === 0) {
            raced++;
            const change = await fetch(`${controlUrl}/admin/v1/accounts/acme-tts`, {
              method: 'PATCH',
              headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json', 'if-match': upstream.headers.get('etag')! },
              body: JSON.stringify({ ws_per_unit: 4 }),
            });
            expect(change.status).toBe(200);
          }
          const out: Record<string, string> = { 'content-type': upstream.headers.get('content-type') ?? 'text/plain' };
          const etag = upstream.headers.get('etag');
          if (etag) out.etag = etag;
          res.writeHead(upstream.status, out).end(text);
        })().catch(() => res.writeHead(502).end());
      });
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    try {
      const via = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const r = await fails(['admin', 'accounts', 'update', 'acme-tts', '--units', '3', '--control-url', via]);
      expect(raced).toBe(1);
      expect(r.code).toBe(1);
      expect(r.lines).toEqual(['voicegate admin: account "acme-tts" was changed by someone else after this command read it; nothing was changed — look at it again and retry']);
    } finally {
      proxy.close();
    }
    expect(await okJson(['admin', 'accounts', 'get', 'acme-tts'])).toMatchObject({ concurrency_units: 2, ws_per_unit: 4 });
    // Without the race the same command goes through.
    expect(await ok(['admin', 'accounts', 'update', 'acme-tts', '--units', '3'])).toMatch(/^updated account acme-tts\n(.*\n)*concurrency_units +3\n/);
  });

  it('the provider token is never an argument', async () => {
    for (const args of [
      ['admin', 'accounts', 'create', 'arg-acct', '--provider-token', ARG_TOKEN],
      ['admin', 'accounts', 'create', 'arg-acct', `--provider-token=${ARG_TOKEN}`],
      ['admin', 'accounts', 'set-token', 'acme-tts', '--provider-token', ARG_TOKEN],
    ]) {
      const r = await fails(args);
      expect(r.code).toBe(2);
      expect(r.lines[0]).toBe('voicegate admin: there is no --provider-token: a flag shows in `ps` and shell history; give --provider-token-file FILE, or - to read stdin');
    }
    // Pasted as a positional: counted, not echoed.
    const pasted = await fails(['admin', 'accounts', 'create', 'arg-acct', ARG_TOKEN]);
    expect(pasted.code).toBe(2);
    expect(pasted.lines[0]).toBe('voicegate admin: accounts create takes NAME, not 1 more word');
    expect((await fails(['admin', 'accounts', 'get', 'arg-acct'])).code).toBe(1);
    expect(written.join('')).not.toContain(ARG_TOKEN);
  });
});

describe('voicegate apply', () => {
  const doc = [
    'accounts:',
    `  - { name: acme-tts, provider: smallest, token: "file:${join(dir, 'acme.key')}", concurrency: 3 }`,
    '  - name: applied-stt',
    '    provider: smallest',
    '    token: file:dev/smallest-stt.key',
    '    concurrency: 4',
    '    collaborators: { users: [bob] }',
    'models:',
    '  - { name: lightning-v3.1, provider: smallest, type: tts, account: acme-tts, aliases: [lightning_v3.1], price: { per_1k_chars: "0.0195" } }',
    '  - { name: lightning-asr, provider: smallest, type: stt, account: applied-stt, price: { per_minute: "0.01" } }',
    'teams:',
    '  - { name: voice, members: [alice, bob] }',
    '',
  ].join('\n');

  it('-f FILE --dry-run shows the plan and changes nothing; -f FILE applies it; again, nothing to do', async () => {
    const file = join(dir, 'voicegate.yaml');
    writeFileSync(file, doc);
    const before = await okJson<Items<{ id: number }>>(['admin', 'audit', 'list']);

    const plan = (await ok(['apply', '-f', file, '--dry-run'])).split('\n').filter(Boolean);
    const tail = plan.pop()!;
    expect(tail).toMatch(/^dry run: \d+ changes would be made; nothing changed \(revision \d+\)$/);
    expect(Number(/(\d+) changes/.exec(tail)![1])).toBe(plan.length);
    expect(plan).toEqual(expect.arrayContaining(['create account applied-stt', 'delete account acme-stt', 'create model applied-stt/lightning-asr', 'create team voice']));
    // Nothing changed: no account, no audit event.
    const missing = await fails(['admin', 'accounts', 'get', 'applied-stt']);
    expect(missing.lines).toEqual(['voicegate admin: Not Found: account "applied-stt" does not exist']);
    expect(await okJson(['admin', 'accounts', 'get', 'acme-stt'])).toMatchObject({ name: 'acme-stt' });
    expect((await okJson<Items<{ id: number }>>(['admin', 'audit', 'list'])).items.length).toBe(before.items.length);

    const applied = (await ok(['apply', '-f', file])).split('\n').filter(Boolean);
    const done = applied.pop()!;
    expect(done).toMatch(new RegExp(`^applied ${plan.length} changes: revision \\d+$`));
    expect(applied).toEqual(plan);
    expect(await okJson(['admin', 'accounts', 'get', 'applied-stt'])).toMatchObject({ concurrency_units: 4, secret: { set: true, last4: APPLIED_TOKEN.slice(-4) } });
    expect((await fails(['admin', 'accounts', 'get', 'acme-stt'])).code).toBe(1);
    expect((await okJson<Items<{ member: string }>>(['admin', 'teams', 'members', 'voice'])).items.map((m) => m.member).sort()).toEqual(['alice', 'bob']);

    // --file, JSON out; and the document on stdin with -f -.
    const again = await okJson<{ dry_run: boolean; changes: unknown[]; revision: number }>(['apply', '--file', file]);
    expect(again).toMatchObject({ dry_run: false, changes: [] });
    expect(await ok(['apply', '-f', '-'], { stdin: doc })).toBe(`no changes: the control plane already matches (revision ${again.revision})\n`);
  });

  it('a bad document is refused with its field, a missing file is a usage error', async () => {
    const bad = await fails(['apply', '-f', '-'], { stdin: 'accounts:\n  - { name: x, provider: smallest, token: "env:NONE", concurrency: 0 }\n' });
    expect(bad.code).toBe(1);
    expect(bad.lines).toEqual([expect.stringMatching(/^voicegate apply: Bad Request: accounts\[0\]\.concurrency: .*\(field accounts\[0\]\.concurrency\)$/)]);
    const missing = await fails(['apply', '-f', join(dir, 'absent.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.lines).toEqual([`voicegate apply: cannot read the document ${join(dir, 'absent.yaml')}: ENOENT`]);
    // -fFILE is -f FILE too.
    expect((await fails(['apply', `-f${join(dir, 'absent.yaml')}`])).lines).toEqual(missing.lines);
    const noFile = await fails(['apply', '--dry-run']);
    expect(noFile.code).toBe(2);
    expect(noFile.lines[0]).toBe('voicegate apply: --file is required');
  });
});

describe('every command’s output', () => {
  it('never shows a provider token', () => {
    const all = written.join('');
    expect(all.length).toBeGreaterThan(5000);
    for (const secret of [FILE_TOKEN, STDIN_TOKEN, APPLIED_TOKEN, ARG_TOKEN]) expect(all).not.toContain(secret);
  });
});
