import { describe, expect, it } from 'vitest';
import { sseBoundary, sseErrorEvent } from './sse-end.ts';

describe('sseErrorEvent', () => {
  it('is one `event: error` with a single-line provider-shaped data line', () => {
    const e = sseErrorEvent('line one\nline "two"');
    const lines = e.split('\n');
    expect(lines[0]).toBe('event: error');
    expect(e.endsWith('\n\n')).toBe(true);
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[1]!.slice('data: '.length))).toEqual({ status: 'error', done: true, message: 'line one\nline "two"', error: 'line one\nline "two"' });
  });
});

describe('sseBoundary', () => {
  const after = (...chunks: string[]) => {
    const b = sseBoundary();
    for (const c of chunks) b.push(Buffer.from(c));
    return b.atBoundary;
  };
  it('is at a boundary before any byte and after a blank line (LF, CR or CRLF), across chunk splits', () => {
    expect(after()).toBe(true);
    expect(after('event: audio\ndata: {}\n\n')).toBe(true);
    expect(after('data: {}\r\n\r\n')).toBe(true);
    expect(after('data: {}\r\r')).toBe(true);
    expect(after('data: {}\n', '\n')).toBe(true);
    expect(after('data: {}\r\n\r', '\n')).toBe(true);
  });
  it('is not mid-event', () => {
    expect(after('event: audio\ndata: {"au')).toBe(false);
    expect(after('event: audio\n')).toBe(false);
    expect(after('data: {}\r\n')).toBe(false);
  });
});
