/**
 * Envoy `CheckResponse` (as @grpc/proto-loader decodes it with voicegate's loader options) → the
 * edge's {@link Decision}, read the way Envoy reads it: `status.code == 0` allows and applies
 * `ok_response`; anything else denies with `denied_response`. External input, so validated with
 * zod and never trusted to be well-formed: a denial outside voicegate's closed set of codes reads as
 * `authz_unavailable`.
 */
import { z } from 'zod';
import { authzUnavailable, deny } from '../../core/decision/decide.ts';
import { isDenyCode } from '../../core/decision/denials.ts';
import { readDecisionMetadata, type Decision, type DecisionMetadata } from '../../core/decision/types.ts';
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
  return readDecisionMetadata(fromStruct(struct as ProtoStruct | null | undefined));
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
  // The edge speaks only to voicegate's own Check service, so a denial carries one of the codes
  // clients may receive; anything else (Envoy's bare 403, a foreign body, a newer code) is a
  // decision the edge cannot read, answered as the one "cannot decide" denial. The status comes
  // from the code, never from the wire, so the two cannot disagree.
  const denied = r.denied_response;
  if (!denied || denied.body === '') return authzUnavailable();
  let body: z.infer<typeof deniedBody>;
  try {
    body = deniedBody.parse(JSON.parse(denied.body));
  } catch {
    return authzUnavailable();
  }
  if (!isDenyCode(body.error.code)) return authzUnavailable();
  const rawStatus = denied.status?.code;
  const wireStatus = typeof rawStatus === 'number' ? rawStatus : rawStatus !== undefined ? statusCodes.get(rawStatus) : undefined;
  const decoded = deny(body.error.code, body.error.message, metadata, {});
  if (wireStatus !== decoded.status) return authzUnavailable();
  const headers = headerRecord(denied.headers);
  delete headers['content-type'];
  return { ...decoded, headers };
}
