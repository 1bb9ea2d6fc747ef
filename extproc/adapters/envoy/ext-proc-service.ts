/**
 * envoy.service.ext_proc.v3.ExternalProcessor/Process: headers only (body modes NONE).
 *
 * ext_proc does not produce spans — the access-log service does, one per request (see
 * access-log-service.ts). ext_proc contributes what the access log may not carry: the caller's
 * `traceparent` and the provider's `X-Request-Id`, keyed by Envoy's x-request-id. Only those
 * allow-listed headers are read; the injected provider `authorization` is never touched.
 * Without `observability_mode` every message gets exactly one matching empty answer (CONTINUE);
 * in observability mode Envoy does not wait and nothing is sent back.
 *
 * With limits (check-admission.ts), the stream claims the slot its request's Check took (read from
 * the forwarded ext_authz metadata) and releases it when the stream ends in any way: half-close,
 * error, cancellation. In observability mode Envoy may hold the stream open up to its
 * `deferred_close_timeout` (default 5 s) after the request; the access-log entry usually releases
 * first there.
 */
import * as grpc from '@grpc/grpc-js';
import { lookup } from '../../../protos/envoy-protos.ts';
import { decisionMetadataFrom, EnvoyCorrelator } from './access-log-span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import type { SlotTable } from '../../core/limits/slots.ts';
import { limitSlotFrom } from './check-admission.ts';

interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Uint8Array | string;
}
type HeaderMapMsg = { headers?: HeaderValue[] | null } | null | undefined;

/** A ProcessingRequest as proto-loader decodes it (keepCase, oneofs). */
export interface ProcessingRequestMsg {
  request?: string;
  request_headers?: { headers?: HeaderMapMsg } | null;
  response_headers?: { headers?: HeaderMapMsg } | null;
  metadata_context?: unknown;
  observability_mode?: boolean;
}

const REPLY_FIELD: Readonly<Record<string, string>> = {
  request_headers: 'request_headers',
  response_headers: 'response_headers',
  request_body: 'request_body',
  response_body: 'response_body',
  request_trailers: 'request_trailers',
  response_trailers: 'response_trailers',
};

/** Reads one header from an Envoy HeaderMap (ext_proc sends values in `raw_value`). */
function header(map: HeaderMapMsg, name: string): string | undefined {
  for (const h of map?.headers ?? []) {
    if (h.key?.toLowerCase() !== name) continue;
    if (h.raw_value && h.raw_value.length > 0) return typeof h.raw_value === 'string' ? h.raw_value : Buffer.from(h.raw_value).toString('utf8');
    return h.value ?? '';
  }
  return undefined;
}

/** One Process stream: feed each ProcessingRequest; `end` once the stream is over, however it ended. */
export interface ProcessStreamHandler {
  (msg: ProcessingRequestMsg): Record<string, unknown> | undefined;
  /** Releases the slot the stream claimed, if any; idempotent. */
  end(): void;
}

/**
 * The in-memory entry point of one Process stream: feed each ProcessingRequest, send back what it
 * returns (undefined in observability mode); call `end` when the stream ends.
 */
export function createProcessStreamHandler(correlator: EnvoyCorrelator, slots?: SlotTable): ProcessStreamHandler {
  let requestId = '';
  let slot: string | undefined;
  const handle = (msg: ProcessingRequestMsg): Record<string, unknown> | undefined => {
    const kind = msg.request ?? Object.keys(REPLY_FIELD).find((k) => (msg as Record<string, unknown>)[k] != null);
    if (kind === 'request_headers') {
      const h = msg.request_headers?.headers;
      requestId = header(h, 'x-request-id') ?? '';
      const traceparent = header(h, 'traceparent');
      const metadata = decisionMetadataFrom(msg.metadata_context);
      correlator.merge(requestId, { ...(traceparent ? { traceparent } : {}), ...(metadata ? { metadata } : {}) });
      // One slot per stream (one request); a second request_headers message cannot move it.
      if (slots && slot === undefined) {
        const id = limitSlotFrom(msg.metadata_context);
        if (id !== undefined && slots.claim(id)) slot = id;
      }
    } else if (kind === 'response_headers') {
      const providerRequestId = header(msg.response_headers?.headers, 'x-request-id');
      if (providerRequestId) correlator.merge(requestId, { providerRequestId });
    }
    if (msg.observability_mode || !kind || !REPLY_FIELD[kind]) return undefined;
    const field = REPLY_FIELD[kind]!;
    return field.endsWith('trailers') ? { [field]: {} } : { [field]: { response: { status: 'CONTINUE' } } };
  };
  return Object.assign(handle, {
    end() {
      if (slot !== undefined) slots?.release(slot, 'stream');
      slot = undefined;
    },
  });
}

const correlators = new WeakMap<SpanSink, EnvoyCorrelator>();

/** The correlator shared by the ext_proc and access-log services registered with `sink`. */
export function correlatorFor(sink: SpanSink): EnvoyCorrelator {
  let c = correlators.get(sink);
  if (!c) correlators.set(sink, (c = new EnvoyCorrelator()));
  return c;
}

type ServiceCtor = { service: grpc.ServiceDefinition };

/** Adds ExternalProcessor/Process to `server`; with `slots`, each stream releases its request's units when it ends. */
export function registerExtProcService(server: grpc.Server, protos: grpc.GrpcObject, sink: SpanSink, slots?: SlotTable): void {
  const service = lookup<ServiceCtor>(protos, 'envoy.service.ext_proc.v3.ExternalProcessor').service;
  const correlator = correlatorFor(sink);
  server.addService(service, {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequestMsg, Record<string, unknown>>) => {
      const handle = createProcessStreamHandler(correlator, slots);
      call.on('data', (msg: ProcessingRequestMsg) => {
        const reply = handle(msg);
        if (reply) call.write(reply);
      });
      call.on('end', () => {
        handle.end();
        call.end();
      });
      // Envoy resets the stream when the request ends early; a cancel (peer gone, connection lost)
      // and 'close' cover every other way out. handle.end is idempotent.
      call.on('error', () => handle.end());
      call.on('cancelled', () => handle.end());
      call.on('close', () => handle.end());
    },
  });
}
