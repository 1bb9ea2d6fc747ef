/**
 * Decision → Envoy `envoy.service.auth.v3.CheckResponse` (plain object for @grpc/proto-loader).
 *
 * Header sets always carry `append_action: OVERWRITE_IF_EXISTS_OR_ADD`: left unset, newer Envoy
 * appends a second `authorization`. `headers_to_remove` never names a header we set, because Envoy
 * applies removals after sets and would delete the injected provider key.
 */
import { denialBody, type Decision } from '../authz/types.ts';
import { toStruct, type ProtoStruct } from './struct.ts';

/** google.rpc.Code values used in `CheckResponse.status`. */
export const RPC_OK = 0;
export const RPC_PERMISSION_DENIED = 7;
export const RPC_UNAUTHENTICATED = 16;
export const RPC_UNAVAILABLE = 14;

/** `envoy.type.v3.StatusCode` enum names for the statuses voicegate denies with. */
export const HTTP_STATUS_NAMES: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  413: 'PayloadTooLarge',
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

export function toCheckResponse(decision: Decision): CheckResponseObject {
  const dynamic_metadata = toStruct({ ...decision.metadata, ...(decision.kind === 'deny' ? { deny_code: decision.code } : {}) });
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
      body: denialBody(decision),
    },
    dynamic_metadata,
  };
}
