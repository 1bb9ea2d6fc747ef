/**
 * Prometheus metrics (prom-client) on one registry per process, exposed on the HTTP port's
 * `/metrics`. Label values are bounded sets (outcome codes, endpoint ids), never user input.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { DecisionMetrics } from '../../core/decision/metrics.ts';

/** The Prometheus implementation of the decision's metrics port, with the registry it lives on. */
export interface AuthzMetrics extends DecisionMetrics {
  readonly registry: Registry;
  readonly checks: Counter<'transport' | 'outcome' | 'code'>;
  readonly decisionSeconds: Histogram<'transport'>;
}

export function createAuthzMetrics(registry = new Registry(), withDefaults = true): AuthzMetrics {
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return {
    registry,
    checks: new Counter({
      name: 'voicegate_authz_checks_total',
      help: 'Authorization checks by transport (grpc, edge), outcome (allow, deny) and reason code',
      labelNames: ['transport', 'outcome', 'code'] as const,
      registers: [registry],
    }),
    decisionSeconds: new Histogram({
      name: 'voicegate_authz_decision_seconds',
      help: 'Time to decide one check, token verification included',
      labelNames: ['transport'] as const,
      buckets: [0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.2],
      registers: [registry],
    }),
  };
}
