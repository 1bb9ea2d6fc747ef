/**
 * The process's own telemetry goes through the OpenTelemetry SDK, so the standard variables set
 * it up: a span created through @opentelemetry/api reaches OTEL_EXPORTER_OTLP_ENDPOINT with
 * OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES on its resource.
 */
import { createServer, type IncomingMessage } from 'node:http';
import { trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { startProcessTelemetry, tracesWanted } from '../../extproc/adapters/otel/process-telemetry.ts';

const VARS = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES'] as const;
const saved = Object.fromEntries(VARS.map((k) => [k, process.env[k]]));

afterEach(() => {
  for (const k of VARS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  trace.disable();
});

interface KeyValue {
  key: string;
  value: { stringValue?: string };
}

describe('process telemetry', () => {
  it('exports a span over OTLP/HTTP to the configured endpoint, with the service name and attributes from the environment', async () => {
    const received: Array<{ path: string | undefined; body: string }> = [];
    const receiver = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method === 'POST') received.push({ path: req.url, body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const { port } = receiver.address() as { port: number };
    try {
      process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = `http://127.0.0.1:${port}`;
      process.env['OTEL_EXPORTER_OTLP_PROTOCOL'] = 'http/json';
      process.env['OTEL_SERVICE_NAME'] = 'vg-telemetry-test';
      process.env['OTEL_RESOURCE_ATTRIBUTES'] = 'deployment.environment=test';

      const telemetry = await startProcessTelemetry('voicegate-default-name');
      trace.getTracer('test').startSpan('hello').end();
      await telemetry.shutdown();

      expect(received.map((r) => r.path)).toContain('/v1/traces');
      const body = JSON.parse(received.find((r) => r.path === '/v1/traces')!.body) as {
        resourceSpans: Array<{ resource: { attributes: KeyValue[] }; scopeSpans: Array<{ spans: Array<{ name: string }> }> }>;
      };
      const attrs = Object.fromEntries(body.resourceSpans[0]!.resource.attributes.map((a) => [a.key, a.value.stringValue]));
      expect(attrs).toMatchObject({ 'service.name': 'vg-telemetry-test', 'deployment.environment': 'test' });
      expect(body.resourceSpans[0]!.scopeSpans[0]!.spans.map((s) => s.name)).toEqual(['hello']);
    } finally {
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it('starts nothing unless an exporter is configured, or when the SDK is disabled', () => {
    expect(tracesWanted({})).toBe(false);
    expect(tracesWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe(true);
    expect(tracesWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracesWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(tracesWanted({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
  });
});
