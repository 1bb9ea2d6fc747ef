/**
 * The configuration document as written in YAML (snake_case, as operators write it). Validated
 * with zod; `compile.ts` turns a valid document into a {@link Snapshot}.
 */
import { z } from 'zod';

/** `env:VAR`, `file:PATH` or — for values that are not secret — a literal string. */
const secretRef = z
  .string()
  .min(1)
  .refine((s) => s.startsWith('env:') || s.startsWith('file:'), {
    message: 'must be a reference: env:VAR or file:PATH (secrets are never written inline)',
  });

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/i, 'must be 1–63 letters, digits, dot, dash or underscore');

const decimal = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal written as a string, e.g. "0.0195"');

const jwk = z.record(z.string(), z.unknown());

export const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const issuer = z
  .strictObject({
    issuer: z.string().min(1),
    audiences: z.array(z.string().min(1)).min(1),
    jwks_url: z.url({ protocol: /^https?$/ }).optional(),
    /** Inline JWKS object, or `file:PATH` to a JWKS JSON file. */
    jwks: z.union([z.strictObject({ keys: z.array(jwk).min(1) }), secretRef]).optional(),
    algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256', 'ES256', 'EdDSA']),
    claims: z
      .strictObject({
        user: z.string().min(1).default('sub'),
        teams: z.string().min(1).default('teams'),
        roles: z.string().min(1).default('roles'),
      })
      .default({ user: 'sub', teams: 'teams', roles: 'roles' }),
    clock_skew_seconds: z.number().int().min(0).max(300).default(30),
    dev_signing_key: secretRef.optional(),
  })
  .refine((i) => (i.jwks_url === undefined) !== (i.jwks === undefined), {
    message: 'set exactly one of jwks_url or jwks',
  });

const provider = z.strictObject({
  upstream: z.url({ protocol: /^https?$/ }).default('https://api.smallest.ai'),
  default_models: z
    .strictObject({ tts: name.optional(), stt: name.optional() })
    .default({}),
});

const account = z.strictObject({
  name,
  provider: name.default('smallest'),
  token: secretRef,
  concurrency: z.number().int().min(1).max(10_000).default(1),
  collaborators: z
    .strictObject({
      users: z.array(z.string().min(1)).default([]),
      teams: z.array(z.string().min(1)).default([]),
    })
    .default({ users: [], teams: [] }),
});

const model = z.strictObject({
  name,
  provider: name.default('smallest'),
  type: z.enum(['tts', 'stt']),
  account: name,
  aliases: z.array(name).default([]),
  price: z
    .strictObject({
      per_1k_chars: decimal.optional(),
      per_minute: decimal.optional(),
      per_minute_streaming: decimal.optional(),
    })
    .default({}),
});

export const configDocument = z.strictObject({
  version: z.literal(1),
  identity: z.strictObject({ issuers: z.array(issuer).min(1) }),
  providers: z.record(name, provider).refine((p) => Object.keys(p).length > 0, {
    message: 'define at least one provider',
  }),
  accounts: z.array(account).min(1),
  models: z.array(model).min(1),
  limits: z
    .strictObject({ max_decision_body_bytes: z.number().int().min(1024).max(1 << 20).default(65_536) })
    .default({ max_decision_body_bytes: 65_536 }),
});

export type ConfigDocument = z.infer<typeof configDocument>;
