/**
 * Bad configuration files: each yields an error that names the offending path, every problem is
 * reported at once, secrets are never echoed, and neither `voicegate extproc` nor `voicegate edge`
 * opens a listener on a configuration that did not load.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError } from '../../extproc/core/config/errors.ts';
import { loadSnapshotFromFile } from '../../extproc/adapters/files/config-file.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const ENV = { VG_BAD_TTS_KEY: 'sk_tts_bad_config_test_0001', SMALLEST_KEY_PROD: 'sk_prod_bad_config_test_0002' };
const LITERAL_SECRET = 'sk_live_inline_literal_9f8e7d6c';

let dir: string;
let publicJwk: JWK;
let privateJwk: JWK;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'voicegate-bad-config-'));
  const pair = await generateKeyPair('ES256', { extractable: true });
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
  privateJwk = { ...(await exportJWK(pair.privateKey)), kid: 'k1', alg: 'ES256' };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The YAML document each case mutates freely; its shape is what the loader under test checks.
type Doc = Record<string, any>;

/** A valid document; each case breaks one thing. */
function goodDoc(): Doc {
  return {
    version: 1,
    identity: {
      issuers: [{ issuer: 'https://idp.test', audiences: ['voicegate'], jwks: { keys: [publicJwk] }, algorithms: ['ES256', 'EdDSA'] }],
    },
    providers: { smallest: { upstream: 'http://127.0.0.1:9', default_models: { tts: 'lightning-v3.1', stt: 'pulse' } } },
    accounts: [
      { name: 'smallest-tts', provider: 'smallest', token: 'env:VG_BAD_TTS_KEY', collaborators: { teams: ['voice'] } },
      { name: 'smallest-prod', provider: 'smallest', token: 'env:SMALLEST_KEY_PROD', collaborators: { users: ['bob'] } },
    ],
    models: [
      { name: 'lightning-v3.1', type: 'tts', account: 'smallest-tts', aliases: ['lightning_v3.1'] },
      { name: 'pulse', type: 'stt', account: 'smallest-prod' },
    ],
  };
}

interface BadCase {
  readonly name: string;
  /** YAML text, or a mutation of the good document. */
  readonly text: string | ((d: Doc) => void);
  readonly env?: Record<string, string>;
  /** Lines the error must contain (after "invalid configuration …:"). */
  readonly expected: readonly string[];
  /** Must not appear anywhere in the error (secrets). */
  readonly never?: () => readonly string[];
}

const CASES: readonly BadCase[] = [
  {
    name: 'provider key env var not set',
    text: () => {},
    env: { VG_BAD_TTS_KEY: ENV.VG_BAD_TTS_KEY },
    expected: ['accounts[1].token: env var SMALLEST_KEY_PROD is not set'],
  },
  {
    name: 'provider key file missing',
    text: (d) => void (d.accounts[0].token = 'file:keys/missing.key'),
    expected: ['accounts[0].token: cannot read file '],
  },
  {
    name: 'model served by an unknown account',
    text: (d) => void (d.models[1].account = 'smallest-nope'),
    expected: ['models[1].account: unknown account "smallest-nope"'],
  },
  {
    name: 'account of an unknown provider',
    text: (d) => void (d.accounts[0].provider = 'elevenlabs'),
    expected: ['accounts[0].provider: unknown provider "elevenlabs"', 'models[0].account: account "smallest-tts" belongs to provider "elevenlabs", not "smallest"'],
  },
  {
    name: 'duplicate model alias',
    text: (d) => void (d.models[1].aliases = ['lightning_v3.1']),
    expected: ['models[1]: model name or alias "lightning_v3.1" is already used by "lightning-v3.1"'],
  },
  {
    name: 'JWKS holding a private key',
    text: (d) => void (d.identity.issuers[0].jwks = { keys: [privateJwk] }),
    expected: ['identity.issuers[0].jwks.keys[0]: is a private key; a JWKS must hold public keys only'],
    never: () => [String(privateJwk.d)],
  },
  {
    name: 'both jwks and jwks_url',
    text: (d) => void (d.identity.issuers[0].jwks_url = 'https://idp.test/jwks.json'),
    expected: ['identity.issuers[0]: set exactly one of jwks_url or jwks'],
  },
  {
    name: 'neither jwks nor jwks_url',
    text: (d) => void delete d.identity.issuers[0].jwks,
    expected: ['identity.issuers[0]: set exactly one of jwks_url or jwks'],
  },
  {
    name: 'YAML syntax error',
    text: 'version: 1\nidentity:\n  issuers: [\n    { issuer: x\nproviders: {}\n',
    expected: ['YAML: '],
  },
  {
    name: 'unknown field (strict)',
    text: (d) => void (d.accounts[1].tokn = 'env:OTHER'),
    expected: ['accounts[1]: Unrecognized key: "tokn"'],
  },
  {
    name: 'bad enum in algorithms',
    text: (d) => void (d.identity.issuers[0].algorithms = ['ES256', 'HS256']),
    expected: ['identity.issuers[0].algorithms[1]: Invalid option: expected one of "RS256"'],
  },
  {
    name: 'default model of the wrong type',
    text: (d) => void (d.providers.smallest.default_models.tts = 'pulse'),
    expected: ['providers.smallest.default_models.tts: model "pulse" is stt, not tts'],
  },
  {
    name: 'inline token literal',
    text: (d) => void (d.accounts[0].token = LITERAL_SECRET),
    expected: ['accounts[0].token: must be a reference: env:VAR or file:PATH (secrets are never written inline)'],
    never: () => [LITERAL_SECRET],
  },
  {
    name: 'several problems at once',
    text: (d) => {
      d.models[1].account = 'smallest-nope';
      d.providers.smallest.default_models.tts = 'pulse';
      d.accounts.push({ name: 'smallest-tts', token: 'env:NOT_SET_EITHER' });
    },
    env: { VG_BAD_TTS_KEY: ENV.VG_BAD_TTS_KEY },
    expected: [
      'accounts[1].token: env var SMALLEST_KEY_PROD is not set',
      'accounts[2].name: duplicate account name "smallest-tts"',
      'accounts[2].token: env var NOT_SET_EITHER is not set',
      'models[1].account: unknown account "smallest-nope"',
      'providers.smallest.default_models.tts: model "pulse" is stt, not tts',
    ],
  },
  {
    // `service` would qualify its users as service:<x>, the users service keys are authorized as.
    name: 'issuer named like a gateway principal prefix',
    text: (d) => {
      d.identity.issuers[0].name = 'service';
      d.identity.issuers.push({ ...d.identity.issuers[0], issuer: 'https://idp2.test', name: 'team' });
      d.identity.issuers.push({ ...d.identity.issuers[0], issuer: 'https://idp3.test', name: 'system' });
    },
    expected: [
      'identity.issuers[0].name: is reserved (service, team, user, system)',
      'identity.issuers[1].name: is reserved',
      'identity.issuers[2].name: is reserved',
    ],
  },
  {
    name: 'several schema problems at once',
    text: (d) => {
      d.version = 2;
      d.identity.issuers[0].clock_skew_seconds = 3600;
      d.models[0].type = 'music';
    },
    expected: ['version: ', 'identity.issuers[0].clock_skew_seconds: ', 'models[0].type: '],
  },
];

async function writeCase(c: BadCase, i: number): Promise<string> {
  let text: string;
  if (typeof c.text === 'string') text = c.text;
  else {
    const d = goodDoc();
    c.text(d);
    text = stringify(d);
  }
  const file = join(dir, `bad-${i}.yaml`);
  await writeFile(file, text);
  return file;
}

function errorLines(message: string): string[] {
  return message.split('\n').slice(1).map((l) => l.trim());
}

describe('the good document is good', () => {
  it('loads (so every failure below is caused by its own change)', async () => {
    const file = join(dir, 'good.yaml');
    await writeFile(file, stringify(goodDoc()));
    const s = await loadSnapshotFromFile(file, { env: ENV });
    expect([...s.accounts.keys()]).toEqual(['smallest-tts', 'smallest-prod']);
  });
});

describe('each bad configuration names its path', () => {
  CASES.forEach((c, i) => {
    it(c.name, async () => {
      const file = await writeCase(c, i);
      const err = await loadSnapshotFromFile(file, { env: c.env ?? ENV }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as ConfigError).message;
      expect(message.split('\n')[0]).toBe(`invalid configuration file:${file}:`);
      const lines = errorLines(message);
      for (const want of c.expected) expect(lines.some((l) => l.startsWith(want)), `${want}\n  in\n${message}`).toBe(true);
      // Every reported line is located or explicitly global (YAML), never a bare message.
      for (const l of lines) expect(l).toMatch(/^(YAML: .+ at line \d+, column \d+$|[a-z_]+[\w.[\]]*: .+)/);
      expect((err as ConfigError).issues.length).toBe(lines.length);
      for (const secret of [...Object.values(ENV), ...(c.never?.() ?? [])]) expect(message).not.toContain(secret);
    });
  });

  it('a missing config file is reported as such', async () => {
    const file = join(dir, 'does-not-exist.yaml');
    await expect(loadSnapshotFromFile(file)).rejects.toThrow(`invalid configuration ${file}:\n  cannot read config file (ENOENT)`);
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, LOG_LEVEL: 'info' };
    for (const k of Object.keys(ENV)) if (!(k in env)) delete childEnv[k];
    delete childEnv['NATS_URL'];
    const child = spawn(process.execPath, [join(ROOT, 'bin/voicegate.js'), ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    // A process that is still running after this long has started serving: that is the failure.
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** Runs `jobs` with at most `limit` at a time (two cores: a few children in parallel). */
async function pool<T>(jobs: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

describe('no half-configured server: the CLI refuses to start', () => {
  // Every case fails inside the same loader (above); the CLI runs cover each stage of it (secret
  // resolution, YAML, schema, cross-references) without spending a process start per case.
  const CLI_CASES = [
    'provider key env var not set',
    'JWKS holding a private key',
    'YAML syntax error',
    'unknown field (strict)',
    'inline token literal',
    'several problems at once',
  ];

  it('voicegate extproc and voicegate edge exit non-zero with the message on stderr and never listen', { timeout: 120_000 }, async () => {
    const picked = CASES.filter((c) => CLI_CASES.includes(c.name));
    expect(picked).toHaveLength(CLI_CASES.length);
    const files = await Promise.all(picked.map((c, i) => writeCase(c, 100 + i)));
    const jobs = picked.flatMap((c, i) => [
      async () => ({ c, cmd: 'extproc', run: await runCli(['extproc', '--config', files[i]!, '--port', '0', '--http-port', '0'], c.env ?? ENV) }),
      async () => ({ c, cmd: 'edge', run: await runCli(['edge', '--config', files[i]!, '--port', '0', '--host', '127.0.0.1'], c.env ?? ENV) }),
    ]);
    const results = await pool(jobs, 4);
    for (const { c, cmd, run } of results) {
      const where = `${cmd}: ${c.name}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
      expect(run.code, where).toBe(1);
      expect(run.stderr, where).toContain('invalid configuration file:');
      for (const want of c.expected) expect(run.stderr, where).toContain(want);
      // Nothing was logged at all: the logger's first line would be a listening/ready line.
      expect(run.stdout, where).toBe('');
      expect(run.stderr, where).not.toMatch(/\blistening\b|\bready\b|"level"/i);
      for (const secret of [...Object.values(ENV), ...(c.never?.() ?? [])]) expect(run.stderr + run.stdout, where).not.toContain(secret);
    }
  });

  it('the same commands do start on the good document (the check above can fail)', { timeout: 60_000 }, async () => {
    const file = join(dir, 'good-cli.yaml');
    await writeFile(file, stringify(goodDoc()));
    const child = spawn(process.execPath, [join(ROOT, 'bin/voicegate.js'), 'edge', '--config', file, '--port', '0', '--http-port', '0', '--spool-dir', join(dir, 'spool'), '--host', '127.0.0.1'], {
      cwd: ROOT,
      env: { ...process.env, ...ENV, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const exited = new Promise<number | null>((r) => child.on('close', r));
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`edge did not become ready: ${stdout}`)), 30_000);
      child.stdout.on('data', (b: Buffer) => {
        stdout += b.toString();
        if (/edge ready/.test(stdout)) {
          clearTimeout(timer);
          ready();
        }
      });
    });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
