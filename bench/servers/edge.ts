/**
 * Benchmark child: the embedded edge. `--upstream URL --authz inproc|HOST:PORT` — `inproc` decides
 * in this process; `HOST:PORT` asks `voicegate extproc` over gRPC (Envoy's ext_authz wire contract).
 * `--limits pod|none|cluster [--nats URL --bucket NAME] [--team-cap N]`: the admission ledger
 * (bench/servers/limits.ts; default `pod`, the edge's own).
 */
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { arg, serve } from './lifecycle.ts';
import { childLimits, childSnapshot } from './limits.ts';

await serve(async () => {
  const source = new StaticSnapshotSource(await childSnapshot());
  const limits = await childLimits(() => source.current(), 'pod');
  const mode = arg('authz', 'inproc');
  const grpc = mode === 'inproc' ? undefined : createGrpcAuthorizer(mode);
  // Case 6 holds 5,000 idle WebSockets open through the edge (above the edge's default connection cap).
  const edge = await startEdge({
    host: '127.0.0.1',
    port: 0,
    source,
    authorizer: grpc ?? createAuthorizer(source),
    maxConnections: 16_384,
    ...(limits.ledger ? { limits: limits.ledger } : {}),
  });
  return {
    port: edge.port,
    close: async () => {
      await edge.close();
      grpc?.close();
      // After the edge: its close ended every exchange, so the grants go back with nothing in use.
      await limits.close();
    },
  };
});
