/**
 * Envoy `CheckRequest` (as decoded by @grpc/proto-loader) → the decision's {@link CheckInput}.
 * Validated with zod: whatever arrives on the wire is external input.
 */
import { z } from 'zod';
import type { CheckInput } from '../authz/types.ts';

const httpRequest = z.looseObject({
  method: z.string().default(''),
  path: z.string().default(''),
  host: z.string().default(''),
  id: z.string().default(''),
  headers: z.record(z.string(), z.string()).default({}),
  body: z.string().default(''),
  raw_body: z.instanceof(Uint8Array).optional().nullable(),
});

const checkRequest = z.looseObject({
  attributes: z
    .looseObject({ request: z.looseObject({ http: httpRequest.optional().nullable() }).optional().nullable() })
    .optional()
    .nullable(),
});

export type CheckRequestParse = { ok: true; input: CheckInput } | { ok: false; reason: string };

export function fromCheckRequest(raw: unknown): CheckRequestParse {
  const parsed = checkRequest.safeParse(raw);
  const http = parsed.success ? parsed.data.attributes?.request?.http : undefined;
  if (!http || http.path === '' || http.method === '') return { ok: false, reason: 'check request without http method and path' };
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(http.headers)) headers[k.toLowerCase()] = v;
  const rawBody = http.raw_body && http.raw_body.byteLength > 0 ? http.raw_body : undefined;
  const body = rawBody ?? (http.body !== '' ? new TextEncoder().encode(http.body) : undefined);
  return {
    ok: true,
    input: {
      method: http.method,
      path: http.path,
      ...(http.host ? { host: http.host } : {}),
      headers,
      ...(body ? { body } : {}),
      ...(http.id ? { requestId: http.id } : {}),
    },
  };
}
