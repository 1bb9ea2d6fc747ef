/**
 * gRPC adapter for `envoy.service.auth.v3.Authorization/Check`: decode, call the in-memory
 * authorizer, encode. A request that cannot be parsed is denied (fail closed), never errored,
 * so Envoy answers the caller with our JSON body instead of its generic 403.
 */
import type * as grpc from '@grpc/grpc-js';
import { deny } from '../authz/decide.ts';
import type { Authorizer, Decision } from '../authz/types.ts';
import type { Logger } from '../observability/logger.ts';
import type { AuthzMetrics } from '../observability/metrics.ts';
import { lookup } from '../../protos/envoy-protos.ts';
import { fromCheckRequest } from './check-request.ts';
import { toCheckResponse } from './check-response.ts';

export interface AuthorizationServiceDeps {
  readonly authorizer: Authorizer;
  readonly logger: Logger;
  readonly metrics?: AuthzMetrics;
}

/** The Check handler, also usable without grpc-js (tests call it with a fake call object). */
export async function handleCheck(raw: unknown, deps: AuthorizationServiceDeps): Promise<Decision> {
  const started = process.hrtime.bigint();
  const parsed = fromCheckRequest(raw);
  let decision: Decision;
  try {
    decision = parsed.ok
      ? await deps.authorizer.check(parsed.input)
      : deny(400, 'bad_check_request', 'the gateway could not read the request', {});
  } catch (err) {
    deps.logger.error({ err: { name: (err as Error).name, message: (err as Error).message } }, 'authorizer failed');
    decision = deny(503, 'authz_error', 'the gateway could not decide; try again shortly', {});
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  deps.metrics?.decisionSeconds.observe({ transport: 'grpc' }, seconds);
  deps.metrics?.checks.inc({ transport: 'grpc', outcome: decision.kind, code: decision.kind === 'allow' ? 'ok' : decision.code });
  if (decision.kind === 'deny' && deps.logger.isLevelEnabled('debug')) {
    const m = decision.metadata;
    deps.logger.debug({ status: decision.status, code: decision.code, user: m.user, model: m.model }, 'denied');
  }
  return decision;
}

export function registerAuthorizationService(
  server: grpc.Server,
  protos: grpc.GrpcObject,
  deps: AuthorizationServiceDeps,
): void {
  const service = lookup<grpc.ServiceClientConstructor>(protos, 'envoy.service.auth.v3.Authorization').service;
  server.addService(service, {
    Check: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      handleCheck(call.request, deps).then(
        (decision) => callback(null, toCheckResponse(decision)),
        // handleCheck never rejects; this is for the impossible case only.
        () => callback(null, toCheckResponse(deny(503, 'authz_error', 'the gateway could not decide', {}))),
      );
    },
  });
}
