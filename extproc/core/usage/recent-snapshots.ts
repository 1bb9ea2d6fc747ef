/**
 * Under Envoy the span is built from the access log, after the decision and possibly after a
 * reload. The decision names its snapshot (`config_version`); this keeps the last few snapshots
 * so the span is priced by the one that decided. A version no longer held (more reloads than
 * `keep` during one exchange) or absent (a decision from elsewhere) falls back to the current one:
 * better a price from the configuration in force than no price at all.
 */
import type { Snapshot, SnapshotSource } from '../config/snapshot.ts';

export type SnapshotFor = (configVersion: number | undefined) => Snapshot | undefined;

export function recentSnapshots(source: SnapshotSource, keep = 4): SnapshotFor {
  const held: Snapshot[] = [];
  const hold = (s: Snapshot) => {
    held.push(s);
    if (held.length > keep) held.shift();
  };
  const initial = source.current();
  if (initial) hold(initial);
  source.onSwap(hold);
  return (version) => (version === undefined ? undefined : held.findLast((s) => s.version === version)) ?? source.current();
}
