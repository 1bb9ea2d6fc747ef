/**
 * Envoy `CheckResponse` (as @grpc/proto-loader decodes it with voicegate's loader options) → the
 * edge's {@link Decision}, read the way Envoy reads it: `status.code == 0` allows and applies
 * `ok_response`; anything else denies with `denied_response` (default 403 when absent). External
 * input, so validated with zod and never trusted to be well-formed.
 */
import { z } from 'zod';
import { authzUnavailable } from '../../core/decision/decide.ts';
import type { Decision, DecisionMetadata, DenyStatus } from '../../core/decision/types.ts';
import { HTTP_STATUS_NAMES } from './check-response.ts';
import { fromStruct, type ProtoStruct } from './struct.ts';

const headerValueOption = z.looseObject({
  header: z.looseObject({ key: z.string(), value: z.string().default('') }).nullish(),
});

const checkResponse = z.looseObject({
  status: z.looseObject({ code: z.number().default(0), message: z.string().default('') }).nullish(),
  ok_response: z
    .looseObject({
      headers: z.array(headerValueOption).default([]),
      headers_to_remove: z.array(z.string()).default([]),
      query_parameters_to_remove: z.array(z.string()).default([]),
    })
    .nullish(),
  denied_response: z
    .looseObject({
      status: z.looseObject({ code: z.union([z.string(), z.number()]) }).nullish(),
      headers: z.array(headerValueOption).default([]),
      body: z.string().default(''),
    })
    .nullish(),
  dynamic_metadata: z.looseObject({ fields: z.record(z.string(), z.unknown()).nullish() }).nullish(),
});

const metadataSchema = z.object({
  user: z.string().optional().catch(undefined),
  teams: z.string().optional().catch(undefined),
  provider: z.string().optional().catch(undefined),
  model: z.string().optional().catch(undefined),
  model_type: z.enum(['tts', 'stt']).optional().catch(undefined),
  account: z.string().optional().catch(undefined),
  route_kind: z.enum(['rest', 'sse', 'websocket']).optional().catch(undefined),
  endpoint: z.string().optional().catch(undefined),
  characters: z.number().optional().catch(undefined),
  upstream_path: z.string().optional().catch(undefined),
  config_version: z.number().optional().catch(undefined),
});

const DENY_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404, 413, 429, 503]);

/** `envoy.type.v3.StatusCode` name → HTTP status, for the names voicegate uses. */
export const DEFAULT_STATUS_CODES: ReadonlyMap<string, number> = new Map(
  Object.entries(HTTP_STATUS_NAMES).map(([n, name]) => [name, Number(n)]),
);

const deniedBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });


function headerRecord(options: readonly z.infer<typeof headerValueOption>[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of options) if (o.header) out[o.header.key.toLowerCase()] = o.header.value;
  return out;
}

function metadataOf(struct: unknown): DecisionMetadata {
  const plain = fromStruct(struct as ProtoStruct | null | undefined);
  const parsed = metadataSchema.parse(plain);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) if (v !== undefined) out[k] = v;
  return out as DecisionMetadata;
}

/**
 * Decodes a CheckResponse. `statusCodes` maps `envoy.type.v3.StatusCode` enum names (proto-loader
 * `enums: String`) to numbers; numeric codes are accepted as they are.
 */
export function decodeCheckResponse(
  raw: unknown,
  statusCodes: ReadonlyMap<string, number> = DEFAULT_STATUS_CODES,
): Decision {
  const parsed = checkResponse.safeParse(raw);
  if (!parsed.success) return authzUnavailable();
  const r = parsed.data;
  const metadata = metadataOf(r.dynamic_metadata);
  if ((r.status?.code ?? 0) === 0) {
    const ok = r.ok_response;
    return {
      kind: 'allow',
      headersToSet: (ok?.headers ?? []).flatMap((o) => (o.header ? [{ key: o.header.key, value: o.header.value }] : [])),
      headersToRemove: ok?.headers_to_remove ?? [],
      queryParametersToRemove: ok?.query_parameters_to_remove ?? [],
      metadata,
    };
  }
  const denied = r.denied_response;
  const rawCode = denied?.status?.code;
  const numeric = typeof rawCode === 'number' ? rawCode : rawCode !== undefined ? statusCodes.get(rawCode) : undefined;
  // The Deny type carries only the statuses voicegate issues; anything else reads as Envoy's default 403.
  const status = (numeric !== undefined && DENY_STATUSES.has(numeric) ? numeric : 403) as DenyStatus;
  const headers = headerRecord(denied?.headers ?? []);
  delete headers['content-type'];
  let code = r.status?.message || 'denied';
  let message = 'Access denied.';
  if (denied && denied.body !== '') {
    try {
      const body = deniedBody.parse(JSON.parse(denied.body));
      code = body.error.code;
      message = body.error.message;
    } catch {
      message = denied.body;
    }
  }
  return { kind: 'deny', status, code, message, headers, metadata };
}
