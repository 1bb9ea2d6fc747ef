/** ext_proc and the access-log service, which turn Envoy's view of each request into a span. */
import type { SnapshotSource } from '../core/config/snapshot.ts';
import type { SpanSink } from '../core/usage/span-sink.ts';
import { recentSnapshots } from '../core/usage/recent-snapshots.ts';
import { registerAccessLogService } from '../adapters/envoy/access-log-service.ts';
import { registerExtProcService } from '../adapters/envoy/ext-proc-service.ts';
import type { ExtprocServerOptions } from '../adapters/envoy/server.ts';

export function envoyUsageServices(sink: SpanSink, source: SnapshotSource): ExtprocServerOptions['extraServices'] {
  return [
    (s, protos) => registerExtProcService(s, protos, sink),
    (s, protos) => registerAccessLogService(s, protos, sink, { snapshot: recentSnapshots(source) }),
  ];
}
