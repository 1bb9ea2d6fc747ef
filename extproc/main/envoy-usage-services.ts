/** ext_proc and the access-log service, which turn Envoy's view of each request into a span. */
import type { SnapshotSource } from '../core/config/snapshot.ts';
import type { SpanSink } from '../core/usage/span-sink.ts';
import { recentSnapshots } from '../core/usage/recent-snapshots.ts';
import { registerAccessLogService } from '../adapters/envoy/access-log-service.ts';
import { registerExtProcService } from '../adapters/envoy/ext-proc-service.ts';
import type { ExtprocServerOptions } from '../adapters/envoy/server.ts';
import type { SlotTable } from '../core/limits/slots.ts';

/** `slots`: the table Check holds its leases in (limits under Envoy); both services release from it. */
export function envoyUsageServices(sink: SpanSink, source: SnapshotSource, slots?: SlotTable): ExtprocServerOptions['extraServices'] {
  return [
    (s, protos) => registerExtProcService(s, protos, sink, slots),
    (s, protos) => registerAccessLogService(s, protos, sink, { snapshot: recentSnapshots(source), ...(slots ? { slots } : {}) }),
  ];
}
