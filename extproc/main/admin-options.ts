/**
 * Flags of `voicegate admin` and `voicegate apply`, the control plane's HTTP clients. Values the
 * CLI only forwards (prices, URLs, dates, expiry, audit kinds, model type) are checked by the API,
 * the one place that knows their rules; its 400 names the wire field. Values the CLI itself
 * interprets (counts, durations, roles, the roll-up dimension) are checked here.
 *
 * The credential is never a flag: a flag's value shows in `ps` and in shell history. It comes
 * from --token-file (VOICEGATE_ADMIN_TOKEN_FILE) or VOICEGATE_ADMIN_TOKEN.
 */
import { z } from 'zod';
import { USAGE_BY } from '../adapters/admin-api/app.ts';
import { flag, oneOf, optional, POSITIVE_INT, required, SWITCH, TEXT } from './flags.ts';
import { parseDurationSeconds } from './duration.ts';

export const DEFAULT_CONTROL_URL = 'http://127.0.0.1:8081';
/** The API's own default grace of a rotated key. */
export const DEFAULT_ROTATE_GRACE_SECONDS = 3600;
export const ADMIN_TOKEN_ENV = 'VOICEGATE_ADMIN_TOKEN';

const CONTROL_URL = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
/** `0`, `90s`, `15m`, `1h`, `7d`, or plain seconds. */
const GRACE = z.string().transform((t, ctx) => (/^0+$/.test(t) ? 0 : (parseDurationSeconds(t) ?? (ctx.addIssue({ code: 'custom', message: 'must be 0 or a duration like 90s, 15m, 1h' }), z.NEVER))));

/** Seconds, or `none` (null on the wire: no per-model limit). */
const MAX_SESSION = z.union([z.literal('none').transform(() => null), POSITIVE_INT], { error: 'must be a positive number of seconds or none' });

/** Where the control plane is and who is asking; every admin command reads them. */
export const CONNECTION_OPTIONS = {
  controlUrl: flag({ flag: 'control-url', value: 'URL', env: 'VOICEGATE_CONTROL_URL', help: 'the control plane (`voicegate control`)', fallback: DEFAULT_CONTROL_URL, schema: CONTROL_URL }),
  tokenFile: optional({ flag: 'token-file', value: 'FILE', env: 'VOICEGATE_ADMIN_TOKEN_FILE', help: `file holding the bearer, a JWT or a vg_ service key (mode 0600); or the bearer itself in ${ADMIN_TOKEN_ENV}`, schema: TEXT }),
  json: flag({ flag: 'json', help: "print the API's JSON instead of a table", fallback: false, schema: SWITCH }),
};

export const ADMIN_OPTIONS = {
  ...CONNECTION_OPTIONS,
  provider: optional({ flag: 'provider', value: 'NAME', help: "the account's provider (the API's default: smallest)", schema: TEXT }),
  baseUrl: optional({ flag: 'base-url', value: 'URL', help: "the provider's base URL for this account; `none` clears it", schema: TEXT }),
  units: optional({ flag: 'units', value: 'N', help: 'concurrency units of the account', schema: POSITIVE_INT }),
  wsPerUnit: optional({ flag: 'ws-per-unit', value: 'N', help: 'WebSocket sessions per unit', schema: POSITIVE_INT }),
  providerTokenFile: optional({ flag: 'provider-token-file', value: 'FILE|-', help: "the account's provider token, from a file or - for stdin (one trailing newline dropped)", schema: TEXT }),
  role: flag({ flag: 'role', value: 'user|manager', help: 'role of a new collaborator', fallback: 'user', schema: oneOf(['user', 'manager']) }),
  account: optional({ flag: 'account', value: 'ACCOUNT', help: 'only the models of this account', schema: TEXT }),
  type: optional({ flag: 'type', value: 'tts|stt', help: 'kind of model', schema: TEXT }),
  description: optional({ flag: 'description', value: 'TEXT', help: 'description of a new team or service account', schema: z.string() }),
  maxSessionSeconds: optional({ flag: 'max-session-seconds', value: 'N|none', help: 'longest a WebSocket session or SSE stream on the model lasts, seconds; `none` clears it', schema: MAX_SESSION }),
  alias: flag({ flag: 'alias', value: 'ALIAS', help: 'another name of the model (repeatable)', multiple: true, fallback: [] as string[], schema: z.array(TEXT) }),
  pricePerThousandChars: optional({ flag: 'price-per-thousand-chars', value: 'USD', help: 'price per 1000 characters, a decimal like 0.05', schema: TEXT }),
  pricePerMinute: optional({ flag: 'price-per-minute', value: 'USD', help: 'price per audio minute', schema: TEXT }),
  pricePerMinuteStreaming: optional({ flag: 'price-per-minute-streaming', value: 'USD', help: 'price per audio minute when streamed', schema: TEXT }),
  expires: optional({ flag: 'expires', value: 'ISO', help: 'expiry of a new key, e.g. 2026-01-31T00:00:00Z (none: never)', schema: TEXT }),
  grace: flag({ flag: 'grace', value: 'DURATION', help: 'how long a rotated key keeps working: 0, 90s, 15m, 1h (seconds without a unit)', fallback: DEFAULT_ROTATE_GRACE_SECONDS, schema: GRACE }),
  quiet: flag({ flag: 'quiet', help: 'print only the minted key, on its own line', fallback: false, schema: SWITCH }),
  resource: optional({ flag: 'resource', value: 'KIND', help: 'only audit events of this kind (account, account_secret, collaborator, model, team, team_member, service_account, service_key)', schema: TEXT }),
  resourceKey: optional({ flag: 'resource-key', value: 'KEY', help: 'only audit events of this resource, e.g. acme-tts or acme-tts/user:alice', schema: TEXT }),
  by: flag({ flag: 'by', value: USAGE_BY.join('|'), help: 'roll-up dimension', fallback: 'user', schema: oneOf(USAGE_BY) }),
  from: optional({ flag: 'from', value: 'YYYY-MM-DD', help: 'first day (UTC) of the usage period (the API: 30 days ago)', schema: TEXT }),
  to: optional({ flag: 'to', value: 'YYYY-MM-DD', help: 'last day (UTC) of the usage period (the API: today)', schema: TEXT }),
};

export const APPLY_OPTIONS = {
  file: required({ flag: 'file', value: 'FILE', help: 'the configuration document, YAML or JSON (- for stdin; -f for short)', schema: TEXT }),
  dryRun: flag({ flag: 'dry-run', help: 'show what would change, change nothing', fallback: false, schema: SWITCH }),
  ...CONNECTION_OPTIONS,
};
