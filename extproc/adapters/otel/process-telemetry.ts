/**
 * The process's own OpenTelemetry set-up, through the SDK so the standard variables work as
 * documented for every OpenTelemetry SDK: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL, OTEL_TRACES_EXPORTER, OTEL_SDK_DISABLED. Usage spans
 * do not go through it: they keep their exactly-once path from NATS (span-exporter.ts).
 *
 * @example
 * const telemetry = await startProcessTelemetry('voicegate-edge');
 * await telemetry.shutdown(); // flushes what is buffered
 */
import { NodeSDK } from '@opentelemetry/sdk-node';

export interface ProcessTelemetry {
  shutdown(): Promise<void>;
}

const NOTHING: ProcessTelemetry = { shutdown: async () => {} };

type Env = Readonly<Record<string, string | undefined>>;

/** Whether the environment asks for trace export at all; without it the SDK would export to localhost. */
export function tracesWanted(env: Env): boolean {
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return false;
  const exporter = env['OTEL_TRACES_EXPORTER']?.trim();
  if (exporter) return exporter !== 'none';
  return Boolean(env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']);
}

/** `serviceName` names the process unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES does. */
export async function startProcessTelemetry(serviceName: string, env: Env = process.env): Promise<ProcessTelemetry> {
  if (!tracesWanted(env)) return NOTHING;
  const named = Boolean(env['OTEL_SERVICE_NAME']) || /(^|,)\s*service\.name\s*=/.test(env['OTEL_RESOURCE_ATTRIBUTES'] ?? '');
  const sdk = new NodeSDK({
    ...(named ? {} : { serviceName }),
    instrumentations: [],
    // Metrics are Prometheus's job here (/metrics); the SDK exports them only when asked to.
    ...(env['OTEL_METRICS_EXPORTER'] ? {} : { metricReaders: [] }),
    ...(env['OTEL_LOGS_EXPORTER'] ? {} : { logRecordProcessors: [] }),
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}
