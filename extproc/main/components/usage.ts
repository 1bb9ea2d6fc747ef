/**
 * The usage pipeline as a component. Its sink and observer exist only once started, so what the
 * edge and the gRPC services are built with forwards to them; both are called per exchange, after
 * the runner started this component first.
 */
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import type { Component } from '../lifecycle.ts';
import { createUsagePipeline, type UsagePipeline, type UsagePipelineOptions } from '../usage-pipeline.ts';

export interface UsageComponent extends Component {
  readonly observe: ExchangeObserverFactory;
  readonly sink: SpanSink;
}

export function usageComponent(opts: UsagePipelineOptions): UsageComponent {
  let pipeline: UsagePipeline | undefined;
  const started = (): UsagePipeline => {
    if (!pipeline) throw new Error('usage pipeline used before it started');
    return pipeline;
  };
  return {
    name: 'usage pipeline',
    observe: ((...args: Parameters<ExchangeObserverFactory>) => started().observe(...args)) as ExchangeObserverFactory,
    sink: {
      publish: (span) => started().sink.publish(span),
      flush: () => started().sink.flush(),
      close: () => started().sink.close(),
    },
    async start() {
      pipeline = await createUsagePipeline(opts);
    },
    drain() {},
    async close() {
      await pipeline?.close();
    },
  };
}
