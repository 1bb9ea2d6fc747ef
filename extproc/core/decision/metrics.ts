/**
 * What a decision transport counts, as a port: the gRPC Check service and the edge report each
 * check through it; the Prometheus adapter implements it. Label values are bounded sets.
 */
export interface DecisionMetrics {
  readonly checks: { inc(labels: { transport: string; outcome: string; code: string }): void };
  readonly decisionSeconds: { observe(labels: { transport: string }, seconds: number): void };
}
