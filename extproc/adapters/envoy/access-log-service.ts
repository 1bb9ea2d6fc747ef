/**
 * envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs: under Envoy this is what produces
 * the usage span — exactly one per HTTPAccessLogEntry (one per request or WebSocket session),
 * built from the entry and the ext_proc contribution for its request id.
 */
import * as grpc from '@grpc/grpc-js';
import { lookup } from '../../../protos/envoy-protos.ts';
import type { SnapshotFor } from '../../core/usage/recent-snapshots.ts';
import { accessLogEntrySchema, EDGE_CLUSTER, spanFromAccessLog, type EnvoyCorrelator } from './access-log-span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import { correlatorFor } from './ext-proc-service.ts';
import type { SlotTable } from '../../core/limits/slots.ts';
import { limitSlotFrom } from './check-admission.ts';

export interface AccessLogOptions {
  /**
   * The snapshot that prices an entry, given the `config_version` its decision names: the one that
   * decided while it is held (`recentSnapshots`), else the one in force.
   */
  readonly snapshot?: SnapshotFor;
  /** Called for entries that could not be turned into spans. */
  readonly onError?: (err: unknown) => void;
  /**
   * Limits under Envoy: the entry of a finished request releases the slot its Check took, if its
   * ext_proc stream has not already (the safety net; releasing twice is impossible).
   */
  readonly slots?: SlotTable;
}

/**
 * Entries written while the request still runs (`access_log_flush_interval`, a tunnel's
 * establishment) must not release its units; only the final one (`DownstreamEnd`, or the
 * unset type of Envoys that write one entry per request) does.
 */
function isFinalEntry(common: Readonly<Record<string, unknown>>): boolean {
  if (common['intermediate_log_entry'] === true) return false;
  const type = common['access_log_type'];
  return type === undefined || type === null || type === 'NotSet' || type === 'DownstreamEnd' || type === 0 || type === 6;
}

/** The in-memory entry point: one StreamAccessLogsMessage in, its spans published. Returns the count. */
export function handleAccessLogMessage(msg: unknown, sink: SpanSink, correlator: EnvoyCorrelator, opts: AccessLogOptions = {}): number {
  const entries = (msg as { http_logs?: { log_entry?: unknown[] } | null } | null)?.http_logs?.log_entry ?? [];
  let n = 0;
  for (const raw of entries) {
    const parsed = accessLogEntrySchema.safeParse(raw);
    if (!parsed.success) {
      opts.onError?.(new Error(`unreadable access log entry: ${parsed.error.issues[0]?.message ?? ''}`));
      continue;
    }
    const requestId = parsed.data.request?.request_id ?? '';
    if (opts.slots && isFinalEntry(parsed.data.common_properties)) {
      const slot = limitSlotFrom(parsed.data.common_properties.metadata);
      if (slot !== undefined) opts.slots.release(slot, 'access_log');
    }
    if (parsed.data.common_properties.upstream_cluster === EDGE_CLUSTER) continue;
    sink.publish(spanFromAccessLog(parsed.data, requestId ? correlator.take(requestId) : undefined, opts.snapshot ?? (() => undefined)));
    n++;
  }
  return n;
}

type ServiceCtor = { service: grpc.ServiceDefinition };

/** Adds AccessLogService/StreamAccessLogs to `server`. */
export function registerAccessLogService(server: grpc.Server, protos: grpc.GrpcObject, sink: SpanSink, opts: AccessLogOptions = {}): void {
  const service = lookup<ServiceCtor>(protos, 'envoy.service.accesslog.v3.AccessLogService').service;
  const correlator = correlatorFor(sink);
  server.addService(service, {
    StreamAccessLogs: (call: grpc.ServerReadableStream<unknown, Record<string, never>>, callback: grpc.sendUnaryData<Record<string, never>>) => {
      call.on('data', (msg: unknown) => {
        try {
          handleAccessLogMessage(msg, sink, correlator, opts);
        } catch (err) {
          opts.onError?.(err);
        }
      });
      call.on('end', () => callback(null, {}));
      call.on('error', () => undefined);
    },
  });
}
