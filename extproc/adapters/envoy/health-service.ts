/**
 * `grpc.health.v1.Health` for Envoy's `grpc_health_check` and Kubernetes gRPC probes. The overall
 * service ("") is SERVING while a configuration snapshot is loaded and the server is not draining.
 */
import * as grpc from '@grpc/grpc-js';
import { lookup } from '../../../protos/envoy-protos.ts';

export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface HealthState {
  status(service: string): ServingStatus;
}

export function registerHealthService(server: grpc.Server, protos: grpc.GrpcObject, state: HealthState): () => void {
  const watchers = new Set<{ call: grpc.ServerWritableStream<{ service?: string }, unknown>; last: ServingStatus }>();
  const service = lookup<grpc.ServiceClientConstructor>(protos, 'grpc.health.v1.Health').service;
  server.addService(service, {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const status = state.status(call.request.service ?? '');
      if (status === 'SERVICE_UNKNOWN') cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else cb(null, { status });
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, unknown>) => {
      const w = { call, last: state.status(call.request.service ?? '') };
      call.write({ status: w.last });
      watchers.add(w);
      call.on('cancelled', () => watchers.delete(w));
    },
  });
  /** Pushes status changes to watchers; call after state changes. */
  return () => {
    for (const w of watchers) {
      const now = state.status(w.call.request.service ?? '');
      if (now !== w.last) {
        w.last = now;
        w.call.write({ status: now });
      }
    }
  };
}
