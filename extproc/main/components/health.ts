/**
 * What a consumer process depends on, and whether each is up right now: one gauge per dependency
 * (`voicegate_dependency_up{dependency="nats"|"postgres"}`) and the readiness its side port
 * reports. A consumer whose database or broker is away stays alive and resumes by itself; a
 * supervisor reads "not ready" here instead of guessing from a live process.
 */
import { Events, type NatsConnection } from 'nats';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Component } from '../lifecycle.ts';

export interface DependencyHealth {
  set(dependency: string, up: boolean): void;
  /** Every dependency up. */
  ready(): boolean;
  /** Names of the dependencies that are down, for logs and `/readyz`. */
  down(): string[];
}

export function dependencyHealth(registry: Registry, dependencies: readonly string[], logger: Logger): DependencyHealth {
  const gauge = new Gauge({ name: 'voicegate_dependency_up', help: '1 when the dependency answered at the last check, 0 when it is away', labelNames: ['dependency'], registers: [registry] });
  const state = new Map<string, boolean>();
  for (const d of dependencies) {
    state.set(d, true);
    gauge.set({ dependency: d }, 1);
  }
  return {
    set(dependency, up) {
      const was = state.get(dependency);
      state.set(dependency, up);
      gauge.set({ dependency }, up ? 1 : 0);
      // Transitions only: a long outage is one line, not one per probe.
      if (was === up) return;
      if (up) logger.info({ dependency }, `${dependency} is back`);
      else logger.warn({ dependency }, `${dependency} is away; work resumes when it returns`);
    },
    ready: () => [...state.values()].every(Boolean),
    down: () => [...state].filter(([, up]) => !up).map(([d]) => d),
  };
}

/** Follows the connection's disconnect/reconnect events (nats.js reconnects by itself). */
export function watchNats(nc: NatsConnection, health: DependencyHealth): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) health.set('nats', false);
      else if (s.type === Events.Reconnect) health.set('nats', true);
    }
  })().catch(() => undefined);
}

/** Probes the pool every `intervalMs` so readiness follows the database even when no span flows. */
export function postgresProbe(pool: pg.Pool, health: DependencyHealth, intervalMs = 2_000): Component {
  let timer: NodeJS.Timeout | undefined;
  let inFlight = false;
  const probe = async () => {
    if (inFlight) return;
    inFlight = true;
    try {
      await pool.query('SELECT 1');
      health.set('postgres', true);
    } catch {
      health.set('postgres', false);
    } finally {
      inFlight = false;
    }
  };
  return {
    name: 'PostgreSQL probe',
    async start() {
      timer = setInterval(() => void probe(), intervalMs);
      timer.unref();
    },
    drain() {},
    async close() {
      clearInterval(timer);
    },
  };
}
