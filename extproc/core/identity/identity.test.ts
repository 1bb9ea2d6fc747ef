/**
 * Identity qualified by issuer (issue 9, point 11): two issuers never share a user or a team, the
 * single unnamed issuer keeps plain names, and list claims are arrays, never split strings.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { IdentityVerifier } from './identity.ts';
import type { IssuerConfig } from '../config/snapshot.ts';
import { compileConfig } from '../config/compile.ts';
import { configDocument } from '../config/schema.ts';
import { claims, makeKey, sign, type TestKey } from '../../../test/authz/fixtures.ts';

const CORP = 'https://idp.corp.test/';
const PARTNER = 'https://login.partner.test/';

function issuer(iss: string, key: TestKey, name?: string): IssuerConfig {
  return {
    issuer: iss,
    ...(name !== undefined ? { name } : {}),
    audiences: ['voicegate'],
    jwks: { keys: [key.jwk] },
    algorithms: ['ES256'],
    userClaim: 'sub',
    teamsClaim: 'teams',
    rolesClaim: 'roles',
    clockToleranceSec: 30,
  };
}

let corpKey: TestKey;
let partnerKey: TestKey;
beforeAll(async () => {
  [corpKey, partnerKey] = await Promise.all([makeKey('ES256'), makeKey('ES256')]);
});

describe('users and teams qualified by issuer', () => {
  it('one unnamed issuer: names stay plain', async () => {
    const v = new IdentityVerifier([issuer(CORP, corpKey)]);
    const r = await v.verify(await sign(corpKey, claims(CORP, 'alice', ['voice'])));
    expect(r).toMatchObject({ ok: true, identity: { user: 'alice', teams: ['voice'] } });
  });

  it('the same sub and team from two issuers are two users and two teams', async () => {
    const v = new IdentityVerifier([issuer(CORP, corpKey), issuer(PARTNER, partnerKey, 'partner')]);
    const fromCorp = await v.verify(await sign(corpKey, claims(CORP, 'alice', ['voice'], { roles: ['admin'] })));
    const fromPartner = await v.verify(await sign(partnerKey, claims(PARTNER, 'alice', ['voice'], { roles: ['admin'] })));
    expect(fromCorp).toMatchObject({ ok: true, identity: { user: 'alice', teams: ['voice'], roles: ['admin'] } });
    expect(fromPartner).toMatchObject({ ok: true, identity: { user: 'partner:alice', teams: ['partner:voice'], roles: ['partner:admin'] } });
  });

  it("beside a named issuer, the unnamed one cannot mint a name in the other's namespace", async () => {
    const v = new IdentityVerifier([issuer(CORP, corpKey), issuer(PARTNER, partnerKey, 'partner')]);
    const asUser = await v.verify(await sign(corpKey, claims(CORP, 'partner:alice')));
    expect(asUser).toMatchObject({ ok: false, code: 'invalid_claims' });
    expect(!asUser.ok && asUser.message).toContain('"sub"');
    const asTeam = await v.verify(await sign(corpKey, claims(CORP, 'mallory', ['partner:voice'])));
    expect(asTeam).toMatchObject({ ok: false, code: 'invalid_claims' });
    expect(!asTeam.ok && asTeam.message).toContain('"teams" claim must be an array of strings');
    // A single unnamed issuer has no namespace to protect: `:` is an ordinary character there.
    const alone = new IdentityVerifier([issuer(CORP, corpKey)]);
    expect(await alone.verify(await sign(corpKey, claims(CORP, 'acct:alice')))).toMatchObject({ ok: true, identity: { user: 'acct:alice' } });
  });

  it('no token names a service account: a lone unnamed issuer cannot mint service:<name>', async () => {
    const alone = new IdentityVerifier([issuer(CORP, corpKey)]);
    const r = await alone.verify(await sign(corpKey, claims(CORP, 'service:ci')));
    expect(r).toMatchObject({ ok: false, code: 'invalid_claims' });
    expect(!r.ok && r.message).toContain('"sub"');
    // Only the prefix is reserved: other names with a colon, or containing "service", still pass.
    expect(await alone.verify(await sign(corpKey, claims(CORP, 'services:ci')))).toMatchObject({ ok: true, identity: { user: 'services:ci' } });
  });
});

describe('list claims are arrays of strings', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['teams as a space-separated string', { teams: 'design voice' }, 'teams'],
    ['teams as a comma-separated string', { teams: 'design,voice' }, 'teams'],
    ['teams as one string', { teams: 'voice' }, 'teams'],
    ['teams holding a number', { teams: ['voice', 7] }, 'teams'],
    ['teams as an object', { teams: { voice: true } }, 'teams'],
    ['roles as a string', { roles: 'admin ops' }, 'roles'],
  ];
  for (const [label, extra, claim] of cases) {
    it(`${label} → invalid_claims naming "${claim}", never split`, async () => {
      const v = new IdentityVerifier([issuer(CORP, corpKey)]);
      const r = await v.verify(await sign(corpKey, { ...claims(CORP, 'carol'), ...extra }));
      expect(r).toMatchObject({ ok: false, code: 'invalid_claims' });
      expect(!r.ok && r.message).toBe(`the token's "${claim}" claim must be an array of strings (names of at most 256 characters)`);
    });
  }

  it('absent or empty lists are no teams', async () => {
    const v = new IdentityVerifier([issuer(CORP, corpKey)]);
    const { teams: _none, ...noTeams } = claims(CORP, 'dave');
    expect(await v.verify(await sign(corpKey, noTeams))).toMatchObject({ ok: true, identity: { user: 'dave', teams: [], roles: [] } });
    expect(await v.verify(await sign(corpKey, claims(CORP, 'erin', [])))).toMatchObject({ ok: true, identity: { teams: [] } });
  });
});

describe('issuer names in the configuration', () => {
  const jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] };
  const doc = (issuers: Array<Record<string, unknown>>, collaborators: Record<string, string[]> = {}) =>
    configDocument.parse({
      version: 1,
      identity: { issuers: issuers.map((i) => ({ audiences: ['voicegate'], jwks, ...i })) },
      providers: { smallest: {} },
      accounts: [{ name: 'a', token: 'env:K', collaborators }],
      models: [{ name: 'lightning-v3.1', type: 'tts', account: 'a' }],
    });
  const compile = (d: ReturnType<typeof doc>) =>
    compileConfig(d, { resolveSecret: async () => ({ ok: true, value: 'sk_x' }), origin: 'test', version: 1 });

  it('one unnamed issuer, or one unnamed beside named ones, compiles', async () => {
    expect((await compile(doc([{ issuer: CORP }], { users: ['alice'] }))).ok).toBe(true);
    const both = await compile(doc([{ issuer: CORP }, { issuer: PARTNER, name: 'partner' }], { users: ['alice', 'partner:alice'] }));
    expect(both.ok && both.snapshot.issuers.map((i) => i.name)).toEqual([undefined, 'partner']);
  });

  it('two unnamed issuers, or two with one name, are refused', async () => {
    const unnamed = await compile(doc([{ issuer: CORP }, { issuer: PARTNER }]));
    expect(unnamed).toMatchObject({ ok: false, issues: [{ path: 'identity.issuers[1].name' }] });
    const same = await compile(doc([{ issuer: CORP, name: 'corp' }, { issuer: PARTNER, name: 'corp' }]));
    expect(same).toMatchObject({ ok: false, issues: [{ path: 'identity.issuers[1].name', message: 'duplicate issuer name "corp"' }] });
  });

  it('the names the gateway qualifies its own principals with are refused, naming the path', () => {
    for (const name of ['service', 'team', 'user', 'system']) {
      const r = configDocument.safeParse({ ...doc([{ issuer: CORP }]), identity: { issuers: [{ issuer: CORP, name, audiences: ['v'], jwks }] } });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]).toMatchObject({ path: ['identity', 'issuers', 0, 'name'], message: expect.stringContaining('is reserved') });
    }
    expect(configDocument.safeParse({ ...doc([{ issuer: CORP }]), identity: { issuers: [{ issuer: CORP, name: 'services', audiences: ['v'], jwks }] } }).success).toBe(true);
  });

  it('a name with ":" is refused; a collaborator qualified with no issuer\'s name is reported', async () => {
    expect(configDocument.safeParse({ ...doc([{ issuer: CORP }]), identity: { issuers: [{ issuer: CORP, name: 'a:b', audiences: ['v'], jwks }] } }).success).toBe(false);
    const typo = await compile(doc([{ issuer: CORP }, { issuer: PARTNER, name: 'partner' }], { teams: ['partnr:voice'] }));
    expect(typo).toMatchObject({ ok: false, issues: [{ path: 'accounts[0].collaborators.teams[0]' }] });
  });
});
