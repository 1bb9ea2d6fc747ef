import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { NOOP_OBSERVER, type ExchangeEnd } from '../../core/exchange/exchange-observer.ts';
import type { Decision } from '../../core/decision/types.ts';
import type { Exchange } from '../../core/exchange/exchange.ts';
import { createInFlight } from './in-flight.ts';

const exchange = {} as Exchange;
const decision = { kind: 'deny' } as Decision;

describe('in-flight tracking', () => {
  it('is settled only once responses, upgrades and observers have all ended', async () => {
    const f = createInFlight();
    const ends: ExchangeEnd[] = [];
    const observe = f.observe(() => ({ ...NOOP_OBSERVER, end: (o) => void ends.push(o) }));
    const res = new EventEmitter() as unknown as ServerResponse;
    f.trackResponse(res);
    let decide!: () => void;
    f.trackUpgrade(new Promise<void>((r) => (decide = r)));
    const observer = observe(exchange, decision);

    expect(await f.requestsDone(20)).toBe(false);
    res.emit('close');
    expect(await f.requestsDone(20)).toBe(true);
    expect(await f.settled(20)).toBe(false);
    decide();
    expect(await f.settled(20)).toBe(false);
    observer.end({ status: 200 });
    expect(await f.settled(1000)).toBe(true);
    expect(ends).toEqual([{ status: 200 }]);
  });

  it('marks exchanges the edge cut after the window as drain_timeout, nothing else', () => {
    const f = createInFlight();
    const ends: ExchangeEnd[] = [];
    const observe = f.observe(() => ({ ...NOOP_OBSERVER, end: (o) => void ends.push(o) }));
    observe(exchange, decision).end({ status: 200, error: 'client_aborted' });
    f.cutting();
    observe(exchange, decision).end({ status: 200, error: 'client_aborted' });
    observe(exchange, decision).end({ status: 101, closeCode: 1001 });
    expect(ends).toEqual([
      { status: 200, error: 'client_aborted' },
      { status: 200, error: 'drain_timeout' },
      { status: 101, closeCode: 1001 },
    ]);
  });
});
