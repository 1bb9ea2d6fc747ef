/**
 * A command line flag as data: its name, how it parses, its default and the environment variable
 * it falls back to. Option schemas (options.ts) are records of these; the parser and the usage
 * text both read them, so `--help` can never drift from what is accepted.
 */
import { z } from 'zod';

export interface Flag<T> {
  /** Without the dashes: `grpc-port`. */
  readonly flag: string;
  /** Placeholder in usage text (`PORT`); absent for a boolean switch. */
  readonly value?: string;
  readonly help: string;
  /** Read when the flag is absent (an empty variable counts as unset). */
  readonly env?: string;
  readonly multiple?: boolean;
  /** Shown in usage text; used when neither the flag nor its variable is given. */
  readonly fallback?: T;
  readonly required?: boolean;
  /** Validates the text (or texts, or `true` for a switch) into the value. */
  readonly schema: z.ZodType<T>;
}

export type FlagSchema = Readonly<Record<string, Flag<unknown>>>;
export type Parsed<S extends FlagSchema> = { -readonly [K in keyof S]: S[K] extends Flag<infer T> ? T : never };

/** A flag with a default: never undefined after parsing. */
export function flag<T>(f: Omit<Flag<T>, 'fallback' | 'required'> & { fallback: NoInfer<T> }): Flag<T> {
  return f;
}

/** A flag that may stay unset. */
export function optional<T>(f: Omit<Flag<T>, 'fallback' | 'required'>): Flag<T | undefined> {
  return f as Flag<T | undefined>;
}

/** A flag that must be given (on the command line or through its variable). */
export function required<T>(f: Omit<Flag<T>, 'fallback' | 'required'>): Flag<T> {
  return { ...f, required: true };
}

/** A flag with the same meaning and a command-specific default. */
export function withDefault<T>(f: Flag<T | undefined>, fallback: NoInfer<T>): Flag<T> {
  const { required: _r, ...rest } = f as Flag<T>;
  return { ...rest, fallback };
}

/** The same flag, required. */
export function mandatory<T>(f: Flag<T | undefined>): Flag<T> {
  const { fallback: _f, ...rest } = f as Flag<T>;
  return { ...rest, required: true };
}

export const PORT = z.string().regex(/^\d{1,5}$/, 'must be a port number 0–65535').transform(Number).refine((n) => n <= 65535, 'must be a port number 0–65535');
export const TEXT = z.string().min(1, 'must not be empty');
export const POSITIVE_INT = z.string().regex(/^[1-9]\d*$/, 'must be a positive integer').transform(Number).refine(Number.isSafeInteger, 'is too large');
export const SWITCH = z.boolean();

/** `one` or `other`, …: a closed set of words. */
export function oneOf<const W extends readonly [string, ...string[]]>(words: W): z.ZodType<W[number]> {
  return z.enum(words, { error: `must be one of ${words.join(', ')}` }) as unknown as z.ZodType<W[number]>;
}

/** `250` (ms), `250ms`, `5s`, `1m`: a delay in milliseconds. */
export const DELAY_MS = z
  .string()
  .regex(/^\d+(ms|s|m)?$/, 'must be milliseconds or a duration like 500ms, 5s, 1m')
  .transform((text) => {
    const m = /^(\d+)(ms|s|m)?$/.exec(text)!;
    return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
  });

export const NON_NEGATIVE_INT = z.string().regex(/^\d+$/, 'must be a non-negative integer').transform(Number).refine(Number.isSafeInteger, 'is too large');

/** `65536`, `64KiB`, `16MiB`, `1GiB`: a size in bytes, above 0. */
export const BYTES = z
  .string()
  .regex(/^[1-9]\d*(KiB|MiB|GiB)?$/, 'must be a number of bytes above 0, or a size like 64KiB, 16MiB, 1GiB')
  .transform((text) => {
    const m = /^(\d+)(KiB|MiB|GiB)?$/.exec(text)!;
    return Number(m[1]) * (m[2] === 'KiB' ? 1024 : m[2] === 'MiB' ? 1024 ** 2 : m[2] === 'GiB' ? 1024 ** 3 : 1);
  })
  .refine(Number.isSafeInteger, 'is too large');
