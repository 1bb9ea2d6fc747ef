/**
 * Benchmark child: the decision service alone (ext_authz Check over gRPC). `--upstream URL`
 * `[--limits none|cluster [--nats URL --bucket NAME] [--team-cap N]]`: with `cluster`, Check takes
 * the units of every call that does not say it admits itself (SELF_ADMISSION_HEADER), as under
 * Envoy, and each slot is released right after the answer (see {@link ReleasedAfterAnswer}).
 */
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import type { Lease } from '../../extproc/core/limits/ledger.ts';
import { SlotTable } from '../../extproc/core/limits/slots.ts';
import { startExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { createLogger } from '../../extproc/main/logger.ts';
import { serve } from './lifecycle.ts';
import { childLimits, childSnapshot } from './limits.ts';

/**
 * Under Envoy the request's ext_proc stream ends and releases its slot; the bench sends Checks
 * alone (no request follows), so each slot is released as soon as the Check that took it is done
 * (a microtask, before the next call is read) — a zero-length request. The release is the one the
 * stream's end makes, on this process's CPU. Not setImmediate: up to 32 calls are read in one
 * event-loop turn, so their units would all be held at once while the grant's heartbeat (a timer,
 * between turns) sees none in use and keeps the grant at 1–2: most Checks were refused (429).
 */
class ReleasedAfterAnswer extends SlotTable {
  override hold(lease: Lease): string {
    const id = super.hold(lease);
    queueMicrotask(() => this.release(id, 'stream'));
    return id;
  }
}

await serve(async () => {
  const source = new StaticSnapshotSource(await childSnapshot());
  const limits = await childLimits(() => source.current(), 'none');
  const logger = createLogger({ level: 'silent', name: 'bench-extproc' });
  const slots = limits.mode === 'cluster' ? new ReleasedAfterAnswer({ onRelease: (cause) => limits.metrics?.slotReleased(cause) }) : undefined;
  const server = await startExtprocServer({
    host: '127.0.0.1',
    port: 0,
    authorizer: createAuthorizer(source),
    source,
    logger,
    ...(limits.ledger && slots ? { limits: { ledger: limits.ledger, slots } } : {}),
  });
  return {
    port: server.port,
    close: async () => {
      await server.close(500);
      await limits.close();
    },
  };
});
