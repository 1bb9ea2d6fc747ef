/**
 * The frame check of TTS WebSocket sessions: which client frames are forwarded on a session decided
 * for one model, and which are refused (with what the client is told).
 */
import { describe, expect, it } from 'vitest';
import type { ModelConfig, Snapshot } from '../config/snapshot.ts';
import { isTtsWebSocketSession, ttsErrorFrame, ttsFrameGuard, type TtsFrameGuard } from './tts-frame.ts';
import type { DecisionMetadata } from './types.ts';

const model = (name: string, aliases: string[], perK: string): ModelConfig => ({
  name,
  provider: 'smallest',
  type: 'tts',
  accounts: [{ account: 'smallest-tts', price: { perThousandChars: perK } }],
  aliases,
});
const standard = model('lightning-v3.1', ['lightning_v3.1'], '0.0195');
const pro = model('lightning-v3.1-pro', ['lightning_v3.1_pro'], '0.039');
const pulse: ModelConfig = { ...model('pulse', [], '0'), type: 'stt', accounts: [{ account: 'smallest-stt', price: { perMinute: '0.0035' } }] };

const byName = new Map<string, ModelConfig>();
for (const m of [standard, pro, pulse]) for (const n of [m.name, ...m.aliases]) byName.set(n, m);
const snapshot: Snapshot = {
  version: 1,
  origin: 'test',
  issuers: [],
  providers: new Map([['smallest', { name: 'smallest', upstream: 'http://127.0.0.1:1' }]]),
  accounts: new Map(),
  models: new Map([['smallest', byName]]),
  defaultModels: new Map([['smallest', { tts: 'lightning-v3.1', stt: 'pulse' }]]),
  maxDecisionBodyBytes: 65536,
};

const session = (md: Partial<DecisionMetadata> = {}): DecisionMetadata => ({
  user: 'alice',
  provider: 'smallest',
  model: 'lightning-v3.1',
  model_type: 'tts',
  account: 'smallest-tts',
  route_kind: 'websocket',
  endpoint: 'tts.ws',
  ...md,
});

function guardFor(md: DecisionMetadata = session()): TtsFrameGuard {
  const g = ttsFrameGuard(md, snapshot);
  if (!g) throw new Error('expected a guard');
  return g;
}
const text = (s: string) => new TextEncoder().encode(s);

describe('which sessions are frame-checked', () => {
  it('TTS WebSocket sessions on path and unified routes, and tts sessions of authorizers that name no endpoint', () => {
    expect(isTtsWebSocketSession(session())).toBe(true);
    expect(isTtsWebSocketSession(session({ endpoint: 'tts.unified.ws' }))).toBe(true);
    expect(isTtsWebSocketSession({ provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts' })).toBe(true);
  });

  it('not STT sockets (audio frames, no model), nor decisions naming no TTS model', () => {
    expect(ttsFrameGuard(session({ model: 'pulse', model_type: 'stt', endpoint: 'stt.ws' }), snapshot)).toBeUndefined();
    expect(ttsFrameGuard(session({ model: 'pulse', model_type: 'stt', endpoint: 'stt.unified.ws' }), snapshot)).toBeUndefined();
    expect(ttsFrameGuard({ provider: 'smallest', model: 'x' }, snapshot)).toBeUndefined();
  });
});

describe('frames that are forwarded, metered at the session model', () => {
  const g = guardFor();
  it.each([
    ['no model', '{"text":"Hello","voice_id":"magnus"}'],
    ['the session model', '{"text":"Hello","voice_id":"magnus","model":"lightning-v3.1"}'],
    ['an alias of it', '{"text":"Hello","voice_id":"magnus","model":"lightning_v3.1"}'],
    ['a flush', '{"text":"","flush":true}'],
    ['a nested object with its own model key', '{"text":"Hi","voice_id":"magnus","extra":{"model":"lightning_v3.1_pro"}}'],
  ])('%s', (_what, frame) => {
    expect(g.check(text(frame), false)).toEqual({ kind: 'forward', model: 'lightning-v3.1' });
  });

  it('a /tts/live session without ?model was decided on the default model and accepts its alias', () => {
    const live = guardFor(session({ endpoint: 'tts.unified.ws' }));
    expect(live.check(text('{"text":"Hi","model":"lightning_v3.1"}'), false)).toEqual({ kind: 'forward', model: 'lightning-v3.1' });
  });
});

describe('frames that are refused', () => {
  const g = guardFor();
  const refused = (frame: string | Uint8Array, binary = false) => {
    const v = g.check(typeof frame === 'string' ? text(frame) : frame, binary);
    if (v.kind !== 'refuse') throw new Error(`expected a refusal of ${String(frame)}`);
    return v;
  };

  it('another model, even one the caller may use on the same account, named by its alias or its name', () => {
    for (const other of ['lightning_v3.1_pro', 'lightning-v3.1-pro']) {
      const v = refused(`{"text":"Hi","voice_id":"magnus","model":"${other}"}`);
      expect(v.reason).toBe('model_conflict');
      expect(v.message).toContain(`"${other}"`);
      expect(v.message).toContain('"lightning-v3.1"');
    }
  });

  it('models the gateway does not know, other spellings and other types', () => {
    for (const other of ['Lightning_v3.1', 'lightning_v3.1 ', 'lightning', 'pulse', '']) {
      expect(refused(JSON.stringify({ text: 'Hi', model: other })).reason).toBe('model_conflict');
    }
  });

  it('an escaped key is the key it decodes to', () => {
    expect(refused('{"text":"Hi","mod\\u0065l":"lightning_v3.1_pro"}').reason).toBe('model_conflict');
  });

  it('a repeated key, whichever copy names the session model (parsers disagree on which wins)', () => {
    expect(refused('{"model":"lightning_v3.1_pro","text":"Hi","model":"lightning_v3.1"}').reason).toBe('ambiguous_parameter');
    expect(refused('{"model":"lightning_v3.1","mod\\u0065l":"lightning_v3.1_pro"}').reason).toBe('ambiguous_parameter');
    // A repeated `text` would let the metered text differ from the synthesised one.
    expect(refused('{"text":"a","text":"a much longer text"}').reason).toBe('ambiguous_parameter');
  });

  it('a key spelled like model in another case', () => {
    expect(refused('{"text":"Hi","Model":"lightning_v3.1_pro"}').reason).toBe('ambiguous_parameter');
  });

  it('a model that is not a string', () => {
    for (const m of ['null', '1', '["lightning_v3.1_pro"]', '{"name":"lightning_v3.1_pro"}']) {
      expect(refused(`{"text":"Hi","model":${m}}`).reason).toBe('invalid_frame');
    }
  });

  it('text that is not a JSON object, or not UTF-8', () => {
    for (const f of ['hello', '"lightning_v3.1_pro"', '[{"model":"lightning_v3.1_pro"}]', 'null', '{"text":"Hi",', '']) {
      expect(refused(f).reason).toBe('invalid_frame');
    }
    expect(refused(Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])).reason).toBe('invalid_frame');
  });

  it('binary frames, even holding JSON (Lightning takes text frames only)', () => {
    expect(refused(text('{"text":"Hi","model":"lightning_v3.1"}'), true).reason).toBe('binary_frame');
  });

  it('on a session whose model the snapshot does not know, any named model but the decided one', () => {
    const orphan = ttsFrameGuard(session({ model: 'lightning-v9' }), snapshot)!;
    expect(orphan.check(text('{"text":"Hi","model":"lightning-v9"}'), false).kind).toBe('forward');
    expect(orphan.check(text('{"text":"Hi","model":"lightning_v3.1"}'), false).kind).toBe('refuse');
  });

  it('clips a long model name in the message', () => {
    const v = refused(JSON.stringify({ text: 'Hi', model: 'x'.repeat(10_000) }));
    expect(v.message.length).toBeLessThan(300);
  });
});

describe('the error frame', () => {
  it('has the provider shape: status error, message and error both set', () => {
    expect(JSON.parse(ttsErrorFrame('nope'))).toEqual({ status: 'error', message: 'nope', error: 'nope' });
  });
});
