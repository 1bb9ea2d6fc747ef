import { describe, expect, it } from 'vitest';
import { encodeSpeech, speech } from './audio-encode.ts';
import { alawToLinear, decodeG711, encodeG711, linearToAlaw, linearToUlaw, ulawToLinear } from './g711.ts';
import { silentMp3 } from './mp3-silence.ts';
import { CHARS_PER_SECOND, synthesizePcm } from './synth.ts';
import { parseWav, wavDurationSec, wavHeader } from './wav.ts';

// Reference values produced by Python's audioop (lin2ulaw / lin2alaw / ulaw2lin / alaw2lin).
const SAMPLES = [0, 1, -1, 100, -100, 1000, -1000, 5000, -5000, 12345, -12345, 32767, -32768];
const ULAW = [255, 255, 126, 242, 114, 206, 78, 171, 43, 151, 23, 128, 0];
const ALAW = [213, 213, 85, 211, 83, 250, 122, 134, 6, 189, 61, 170, 42];
const ULAW_BACK = [0, 0, -8, 104, -104, 988, -988, 5116, -5116, 12412, -12412, 32124, -32124];
const ALAW_BACK = [8, 8, -8, 104, -104, 1008, -1008, 4992, -4992, 12544, -12544, 32256, -32256];

function pcmOf(samples: number[]): Buffer {
  const b = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => b.writeInt16LE(s, i * 2));
  return b;
}

describe('G.711', () => {
  it('encodes known samples to the reference µ-law and A-law bytes', () => {
    expect(SAMPLES.map(linearToUlaw)).toEqual(ULAW);
    expect(SAMPLES.map(linearToAlaw)).toEqual(ALAW);
    expect([...encodeG711(pcmOf(SAMPLES), 'ulaw')]).toEqual(ULAW);
    expect([...encodeG711(pcmOf(SAMPLES), 'alaw')]).toEqual(ALAW);
  });

  it('decodes to the reference samples and round-trips within the quantisation step', () => {
    expect(ULAW.map(ulawToLinear)).toEqual(ULAW_BACK);
    expect(ALAW.map(alawToLinear)).toEqual(ALAW_BACK);
    for (let s = -32768; s < 32768; s += 97) {
      for (const [enc, dec] of [[linearToUlaw, ulawToLinear], [linearToAlaw, alawToLinear]] as const) {
        const back = dec(enc(s));
        expect(Math.abs(back - s)).toBeLessThanOrEqual(Math.max(16, Math.abs(s) / 16) + 700 * Number(Math.abs(s) > 32000));
      }
    }
    expect([...decodeG711(Uint8Array.from(ULAW), 'ulaw')]).toEqual(ULAW_BACK);
  });
});

describe('synthesis', () => {
  it('is deterministic, follows the text length and scales with speed', () => {
    const text = 'The quick brown fox jumps over the lazy dog, again.';
    const a = synthesizePcm(text, 24000, 1);
    expect(a.equals(synthesizePcm(text, 24000, 1))).toBe(true);
    expect(a.equals(synthesizePcm(`${text}!`, 24000, 1))).toBe(false);
    expect(a.length / 2 / 24000).toBeCloseTo(text.length / CHARS_PER_SECOND, 2);
    expect(synthesizePcm(text, 24000, 2).length).toBeCloseTo(a.length / 2, -2);
    const samples = new Int16Array(a.buffer, a.byteOffset, a.length / 2);
    expect(Math.max(...samples)).toBeGreaterThan(1000); // not silence
  });

  it('writes a valid WAV file that parses back to the same duration', () => {
    const wav = speech('Hello from the simulator.', 16000, 1, 'wav').bytes;
    const info = parseWav(wav, wav.length)!;
    expect(info).toMatchObject({ formatTag: 1, channels: 1, sampleRate: 16000, bitsPerSample: 16, dataOffset: 44 });
    expect(wav.readUInt32LE(4)).toBe(wav.length - 8);
    expect(wavDurationSec(info)).toBeCloseTo(25 / 16, 2);
  });

  it('parses WAV files with extra chunks and streaming size fields', () => {
    const pcm = Buffer.alloc(16000);
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc\0')]);
    const h = wavHeader(0xffffffff, 8000, 16, 1);
    const file = Buffer.concat([h.subarray(0, 36), list, h.subarray(36), pcm]);
    const info = parseWav(file, file.length)!;
    expect(info.dataBytes).toBe(16000);
    expect(wavDurationSec(info)).toBeCloseTo(1, 5);
    expect(parseWav(Buffer.from('RIFF\0\0\0\0WAVEjunk'), 16)).toBeUndefined();
  });

  it('encodes ulaw/alaw at one byte per sample and mp3 as valid silent MPEG frames', () => {
    const pcm = synthesizePcm('abc def', 8000, 1);
    expect(encodeSpeech(pcm, 'ulaw', 8000).length).toBe(pcm.length / 2);
    expect(encodeSpeech(pcm, 'alaw', 8000)[0]).toBe(linearToAlaw(pcm.readInt16LE(0)));
    for (const [rate, frame, perFrame] of [[44100, 104, 1152], [24000, 96, 576], [16000, 144, 576], [8000, 72, 576]] as const) {
      const mp3 = silentMp3(rate * 2, rate);
      expect(mp3.length).toBe(Math.ceil((rate * 2) / perFrame) * frame);
      expect(mp3[0]).toBe(0xff);
      expect(mp3[1]! & 0xe0).toBe(0xe0); // frame sync
      expect(mp3[frame]).toBe(0xff);
      expect((mp3[1]! >> 1) & 3).toBe(1); // layer III
    }
  });
});
