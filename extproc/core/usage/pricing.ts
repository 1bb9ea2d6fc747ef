/**
 * Cost of one exchange from the model's configured prices, in exact decimals.
 * TTS: characters / 1000 × perThousandChars. STT: seconds / 60 × perMinute (REST) or
 * perMinuteStreaming (WebSocket; falls back to perMinute).
 */
import type { RouteKind } from '../decision/types.ts';
import type { ModelConfig, Price, Snapshot } from '../config/snapshot.ts';
import { Decimal } from './decimal.ts';

export interface Metered {
  readonly characters?: number;
  readonly audioSeconds?: number;
}

/** Exact cost in USD as a canonical decimal string; "0" when the price or quantity is missing. */
export function costUsd(price: Price | undefined, routeKind: RouteKind | '', metered: Metered): string {
  if (!price) return '0';
  let cost = Decimal.ZERO;
  if (metered.characters !== undefined && price.perThousandChars) {
    cost = cost.add(Decimal.fromInteger(metered.characters).mul(Decimal.parse(price.perThousandChars)).divInt(1000));
  }
  const perMinute = routeKind === 'websocket' ? (price.perMinuteStreaming ?? price.perMinute) : price.perMinute;
  if (metered.audioSeconds !== undefined && perMinute) {
    // Seconds carry at most 6 decimals (metering rounds them), so toFixed(6) is their exact value.
    cost = cost.add(Decimal.parse(metered.audioSeconds.toFixed(6)).mul(Decimal.parse(perMinute)).divInt(60));
  }
  return cost.toString();
}

/** The model config for (provider, model name or alias) in a snapshot. */
export function findModel(snapshot: Snapshot | undefined, provider: string, model: string): ModelConfig | undefined {
  return snapshot?.models.get(provider)?.get(model);
}

/** Only exchanges the provider served are billable: 2xx, or 101 for WebSockets. */
export function isBillableStatus(status: number): boolean {
  return status === 101 || (status >= 200 && status < 300);
}
