/** The span stream's consumers (aggregator, OTLP export) as components. */
import type { RunningConsumer } from '../../adapters/nats/span-consumer.ts';
import type { Component } from '../lifecycle.ts';

/** Wraps a consumer started by `begin`; `done` settles when it stops on its own. */
export function consumerComponent(name: string, begin: () => Promise<RunningConsumer>): Component {
  let running: RunningConsumer | undefined;
  return {
    name,
    async start() {
      running = await begin();
    },
    drain() {},
    async close() {
      await running?.stop();
    },
    done: () => running?.done ?? Promise.resolve(),
  };
}
