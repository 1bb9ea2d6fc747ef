/** The process's own OpenTelemetry SDK as a component: first to start, last to close. */
import { startProcessTelemetry } from '../../adapters/otel/process-telemetry.ts';
import type { Component } from '../lifecycle.ts';

export function telemetryComponent(serviceName: string): Component {
  let sdk: { shutdown(): Promise<void> } | undefined;
  return {
    name: 'OpenTelemetry SDK',
    async start() {
      sdk = await startProcessTelemetry(serviceName);
    },
    drain() {},
    async close() {
      await sdk?.shutdown();
    },
  };
}
