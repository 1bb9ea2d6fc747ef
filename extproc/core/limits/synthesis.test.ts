import { describe, expect, it } from 'vitest';
import type { Admission, Refusal } from './ledger.ts';
import { synthesisGate } from './synthesis.ts';

/** A gate over a pool of `max` units, counting what it holds. */
function pool(max: number) {
  let held = 0;
  const refusal: Refusal = { kind: 'refused', scope: 'user', name: 'alice', limit: 'max_units', max, retryAfterMs: 1000 };
  const acquire = (): Admission => {
    if (held >= max) return refusal;
    held++;
    let done = false;
    return { kind: 'granted', lease: { kind: 'tts-synthesis', get released() { return done; }, release: () => (done ? false : ((done = true), held--, true)) } };
  };
  return { gate: synthesisGate(acquire), held: () => held };
}

const frame = (o: object) => Buffer.from(JSON.stringify(o));
const chunk = frame({ session_id: 'ws_1', request_id: 'task_1', status: 'chunk', data: { audio: 'AAAA' } });
const complete = frame({ session_id: 'ws_1', request_id: 'task_1', status: 'complete' });
const error = frame({ status: 'error', message: 'x', error: 'x' });

describe('synthesisGate', () => {
  it('holds one unit per text frame until complete; keepalives and empty flushes take none', () => {
    const { gate, held } = pool(5);
    expect(gate.client(frame({ text: 'Hello', voice_id: 'magnus' }), false).kind).toBe('forward');
    expect(gate.client(frame({ text: 'World' }), false).kind).toBe('forward');
    expect(gate.client(frame({ text: ' ' }), false).kind).toBe('forward');
    expect(gate.client(frame({ text: '', flush: true }), false).kind).toBe('forward');
    expect(held()).toBe(2);
    gate.upstream(chunk, false);
    expect(held()).toBe(2);
    gate.upstream(complete, false);
    expect(held()).toBe(0);
  });

  it('refuses a synthesis over the limit with the provider error shape and keeps counting correctly', () => {
    const { gate, held } = pool(1);
    gate.client(frame({ text: 'one' }), false);
    const v = gate.client(frame({ text: 'two', request_id: 'mine-2' }), false);
    expect(v.kind).toBe('refuse');
    if (v.kind !== 'refuse') return;
    const sent = JSON.parse(v.frame) as Record<string, unknown>;
    expect(sent).toMatchObject({ status: 'error', code: 'user_limit_exceeded', external_request_id: 'mine-2', retry_after_seconds: 1 });
    expect(sent.message).toBe(sent.error);
    expect(String(sent.message)).toContain('max_units');
    expect(held()).toBe(1);
  });

  it('counts a continued buffer as one synthesis, held across a complete of an earlier one', () => {
    const { gate, held } = pool(5);
    gate.client(frame({ text: 'first' }), false);
    gate.client(frame({ text: 'Once upon', continue: true }), false);
    gate.client(frame({ text: ' a time', continue: true }), false);
    expect(held()).toBe(2);
    gate.upstream(complete, false);
    expect(held()).toBe(1);
    gate.client(frame({ text: '', flush: true }), false);
    expect(held()).toBe(1);
    gate.upstream(complete, false);
    expect(held()).toBe(0);
  });

  it('takes a unit per frame of a buffer the provider may flush on a timer', () => {
    const { gate, held } = pool(5);
    gate.client(frame({ text: 'a', continue: true, max_buffer_flush_ms: 100 }), false);
    gate.client(frame({ text: 'b', continue: true }), false);
    expect(held()).toBe(2);
  });

  it('returns one unit per error frame and every unit at the end, once', () => {
    const { gate, held } = pool(5);
    for (const t of ['a', 'b', 'c']) gate.client(frame({ text: t }), false);
    gate.upstream(error, false);
    expect(held()).toBe(2);
    gate.end();
    gate.end();
    expect(held()).toBe(0);
    expect(gate.client(frame({ text: 'late' }), false).kind).toBe('forward');
    expect(held()).toBe(0);
  });

  it('is not fooled by audio or text that merely contains the words', () => {
    const { gate, held } = pool(5);
    gate.client(frame({ text: 'say "complete"' }), false);
    gate.upstream(frame({ status: 'chunk', data: { audio: 'completeerror' } }), false);
    gate.upstream(frame({ status: 'word_timestamp', data: { word: '"complete"' } }), false);
    expect(held()).toBe(1);
  });
});
