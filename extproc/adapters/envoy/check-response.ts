/**
 * Decision → Envoy `envoy.service.auth.v3.CheckResponse` (plain object for @grpc/proto-loader).
 *
 * Header sets always carry `append_action: OVERWRITE_IF_EXISTS_OR_ADD`: left unset, newer Envoy
 * appends a second `authorization`. `headers_to_remove` never names a header we set, because Envoy
 * applies removals after sets and would delete the injected provider key.
 */
import type * as protobuf from 'protobufjs';
import type { DenyStatus } from '../../core/decision/denials.ts';
import { denialBody, type Decision } from '../../core/decision/types.ts';
import { toStruct, type ProtoStruct } from './struct.ts';

/** google.rpc.Code values used in `CheckResponse.status`. */
export const RPC_OK = 0;
export const RPC_PERMISSION_DENIED = 7;
export const RPC_UNAUTHENTICATED = 16;
export const RPC_UNAVAILABLE = 14;

/** `envoy.type.v3.StatusCode` enum names for the statuses voicegate denies with. */
export const HTTP_STATUS_NAMES: Readonly<Record<DenyStatus | 429 | 502 | 504, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  413: 'PayloadTooLarge',
  415: 'UnsupportedMediaType',
  429: 'TooManyRequests',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

export interface HeaderValueOption {
  header: { key: string; value: string };
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' | 'APPEND_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT' | 'OVERWRITE_IF_EXISTS';
}

export interface CheckResponseObject {
  status: { code: number; message?: string };
  ok_response?: {
    headers: HeaderValueOption[];
    headers_to_remove: string[];
    query_parameters_to_remove: string[];
  };
  denied_response?: {
    status: { code: string };
    headers: HeaderValueOption[];
    body: string;
  };
  dynamic_metadata: ProtoStruct;
}

/**
 * What Check adds to a decision once it admitted against the limits (check-admission.ts): the slot
 * id of the units taken, or the body of a limit refusal (the edge's 429 JSON, naming the limit).
 */
export interface CheckExtras {
  readonly slot?: string;
  readonly deniedBody?: string;
}

/** Where the slot id travels in the ext_authz namespace; ext_proc and the access log read it back. */
export const LIMIT_SLOT_KEY = 'limit_slot';

export function toCheckResponse(decision: Decision, extra: CheckExtras = {}): CheckResponseObject {
  const dynamic_metadata = toStruct({
    ...decision.metadata,
    ...(decision.kind === 'deny' ? { deny_code: decision.code } : {}),
    ...(extra.slot !== undefined ? { [LIMIT_SLOT_KEY]: extra.slot } : {}),
  });
  if (decision.kind === 'allow') {
    return {
      status: { code: RPC_OK },
      ok_response: {
        headers: decision.headersToSet.map((h) => ({
          header: { key: h.key, value: h.value },
          append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
        })),
        headers_to_remove: [...decision.headersToRemove],
        query_parameters_to_remove: [...decision.queryParametersToRemove],
      },
      dynamic_metadata,
    };
  }
  const headers: HeaderValueOption[] = [
    { header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ...Object.entries(decision.headers).map(([key, value]) => ({
      header: { key, value },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' as const,
    })),
  ];
  return {
    status: {
      code: decision.status === 401 ? RPC_UNAUTHENTICATED : decision.status === 503 ? RPC_UNAVAILABLE : RPC_PERMISSION_DENIED,
      message: decision.code,
    },
    denied_response: {
      status: { code: HTTP_STATUS_NAMES[decision.status] ?? 'Forbidden' },
      headers,
      body: extra.deniedBody ?? denialBody(decision),
    },
    dynamic_metadata,
  };
}

/** Decision → CheckResponse wire bytes. */
export type CheckResponseEncoder = (decision: Decision, extra?: CheckExtras) => Uint8Array;

/**
 * Encodes with protobufjs' generated `encode` straight from {@link toCheckResponse}'s object, with
 * the enum names turned into their numbers from Envoy's protos. This yields the same bytes as
 * proto-loader's serializer (`encode(fromObject(obj))`) without building message instances first.
 */
export function checkResponseEncoder(root: protobuf.Root): CheckResponseEncoder {
  const type = root.lookupType('envoy.service.auth.v3.CheckResponse');
  const actions = root.lookupEnum('envoy.config.core.v3.HeaderValueOption.HeaderAppendAction').values;
  const statuses = root.lookupEnum('envoy.type.v3.StatusCode').values;
  const enumValue = (values: Readonly<Record<string, number>>, name: string): number => {
    const v = values[name];
    if (v === undefined) throw new Error(`enum value not found: ${name}`);
    return v;
  };
  const headers = (options: readonly HeaderValueOption[]) =>
    options.map((o) => ({ header: o.header, append_action: enumValue(actions, o.append_action) }));
  return (decision, extra) => {
    const r = toCheckResponse(decision, extra);
    const wire = {
      status: r.status,
      ...(r.ok_response ? { ok_response: { ...r.ok_response, headers: headers(r.ok_response.headers) } } : {}),
      ...(r.denied_response
        ? {
            denied_response: {
              status: { code: enumValue(statuses, r.denied_response.status.code) },
              headers: headers(r.denied_response.headers),
              body: r.denied_response.body,
            },
          }
        : {}),
      dynamic_metadata: r.dynamic_metadata,
    };
    return type.encode(wire).finish();
  };
}
