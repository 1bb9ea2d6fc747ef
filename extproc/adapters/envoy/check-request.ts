/**
 * Envoy `CheckRequest` → the decision's {@link CheckInput}: from a proto-loader object (validated
 * with zod: whatever arrives is external input) or straight from the wire bytes with protobufjs.
 */
import type * as protobuf from 'protobufjs';
import { z } from 'zod';
import type { CheckInput } from '../../core/decision/types.ts';

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

/** The `attributes.request.http` fields the decision reads, with proto3 defaults. */
interface HttpFields {
  method: string;
  path: string;
  host: string;
  id: string;
  headers: Record<string, string>;
  body: string;
  raw_body?: Uint8Array | null | undefined;
}

export function fromCheckRequest(raw: unknown): CheckRequestParse {
  const parsed = checkRequest.safeParse(raw);
  return toCheckInput(parsed.success ? parsed.data.attributes?.request?.http : undefined);
}

function toCheckInput(http: HttpFields | null | undefined): CheckRequestParse {
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

/** The decoded (protobufjs) shape of the part of a CheckRequest the decision reads. */
interface DecodedCheckRequest {
  attributes?: { request?: { http?: Partial<HttpFields> | null } | null } | null;
}

/**
 * CheckRequest wire bytes → {@link CheckRequestParse}, with protobufjs's generated-on-load decoder
 * for Envoy's own `CheckRequest` type (measured 2.3 µs against 5.8 µs for proto-loader's generic
 * object conversion plus zod on an Envoy-shaped request). Malformed bytes are a failed parse (the
 * caller denies), never an exception.
 */
export function decodeCheckRequest(bytes: Uint8Array, checkRequestType: protobuf.Type): CheckRequestParse {
  let decoded: DecodedCheckRequest;
  try {
    decoded = checkRequestType.decode(bytes) as DecodedCheckRequest;
  } catch {
    return { ok: false, reason: 'malformed check request' };
  }
  const h = decoded.attributes?.request?.http;
  if (!h) return toCheckInput(undefined);
  // protobufjs leaves absent proto3 scalars on the prototype ('' and empty maps), as proto3 reads.
  return toCheckInput({
    method: h.method ?? '',
    path: h.path ?? '',
    host: h.host ?? '',
    id: h.id ?? '',
    headers: h.headers ?? {},
    body: h.body ?? '',
    raw_body: h.raw_body ?? undefined,
  });
}
