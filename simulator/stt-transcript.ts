/**
 * Deterministic transcripts: the same audio gives the same words. About three words per second;
 * the second word of a segment is a first name and the last (from three words on) a card CVV, so
 * `redact_pii` / `redact_pci` always have something to replace with `[FIRSTNAME_n]` /
 * `[CREDITCARDCVV_n]` placeholders.
 */
import { mulberry32 } from './hash.ts';

const WORDS = [
  'hello', 'thanks', 'for', 'calling', 'today', 'please', 'confirm', 'the', 'order', 'number', 'and', 'address',
  'we', 'will', 'ship', 'it', 'tomorrow', 'morning', 'can', 'you', 'hear', 'me', 'clearly', 'now', 'yes', 'that',
  'works', 'great', 'my', 'account', 'is', 'ready', 'voice', 'gateway', 'check', 'balance', 'payment', 'schedule',
  'meeting', 'at', 'noon', 'sounds', 'good', 'perfect', 'see', 'soon', 'call', 'back',
] as const;
const NAMES = ['Alice', 'Rahul', 'Maria', 'John', 'Priya', 'Omar', 'Sofia', 'Daniel'] as const;

export const WORDS_PER_SECOND = 3;

export interface TranscriptOptions {
  readonly redactPii: boolean;
  readonly redactPci: boolean;
}

/** Placeholder numbering, per REST request or per streaming session. */
export interface RedactionCounters {
  pii: number;
  pci: number;
}

export interface TranscriptWord {
  readonly word: string;
  readonly start: number;
  readonly end: number;
  readonly confidence: number;
  readonly speaker: number;
}

export interface TranscriptSegment {
  readonly transcript: string;
  readonly words: TranscriptWord[];
  /** Placeholders used in this segment, in order. */
  readonly redactedEntities: string[];
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Words spoken in `seconds` of audio (none for under 0.2 s). */
export function wordCount(seconds: number): number {
  return seconds < 0.2 ? 0 : Math.max(1, Math.round(seconds * WORDS_PER_SECOND));
}

/**
 * Transcribes `seconds` of audio whose content hashes to `seed`, with timestamps offset by
 * `offsetSec`. Advances `counters` for each placeholder it writes.
 */
export function transcribe(seed: number, seconds: number, offsetSec: number, opts: TranscriptOptions, counters: RedactionCounters): TranscriptSegment {
  const n = wordCount(seconds);
  const rnd = mulberry32(seed);
  const words: TranscriptWord[] = [];
  const redacted: string[] = [];
  const slot = n > 0 ? seconds / n : 0;
  for (let i = 0; i < n; i++) {
    let word: string;
    if (i === 1) {
      word = NAMES[Math.floor(rnd() * NAMES.length)]!;
      if (opts.redactPii) {
        word = `[FIRSTNAME_${++counters.pii}]`;
        redacted.push(word);
      }
    } else if (i >= 2 && i === n - 1) {
      word = String(100 + Math.floor(rnd() * 900));
      if (opts.redactPci) {
        word = `[CREDITCARDCVV_${++counters.pci}]`;
        redacted.push(word);
      }
    } else {
      word = WORDS[Math.floor(rnd() * WORDS.length)]!;
    }
    const start = offsetSec + i * slot + slot * 0.1;
    words.push({ word, start: round2(start), end: round2(offsetSec + (i + 1) * slot - slot * 0.05), confidence: round2(0.9 + rnd() * 0.09), speaker: 0 });
  }
  return { transcript: words.map((w) => w.word).join(' '), words, redactedEntities: redacted };
}
