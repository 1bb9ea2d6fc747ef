/**
 * Opaque cursors of keyset pagination: the sort key of the last row of a page, as base64url JSON.
 * Keyset (not offset) pagination keeps pages stable while rows are inserted or deleted between
 * calls. A cursor from another list, or forged, is refused rather than silently restarting.
 */
import { z } from 'zod';
import { InvalidCursorError } from './errors.ts';

const cursorShape = z.strictObject({ l: z.string().min(1), k: z.array(z.union([z.string(), z.number()])).min(1) });

/** Encodes the sort key `key` of the last row of a page of list `list`. */
export function encodeCursor(list: string, key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify({ l: list, k: key }), 'utf8').toString('base64url');
}

/** Decodes a cursor issued by {@link encodeCursor} for `list` with `arity` key parts. */
export function decodeCursor(list: string, cursor: string, arity: number): (string | number)[] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  const parsed = cursorShape.safeParse(value);
  if (!parsed.success || parsed.data.l !== list || parsed.data.k.length !== arity) throw new InvalidCursorError();
  return parsed.data.k;
}

/** Every item of a paged list, page after page (for lists known to be small: one account's collaborators). */
export async function allPages<T>(page: (cursor: string | null) => Promise<{ items: readonly T[]; nextCursor: string | null }>): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  do {
    const p = await page(cursor);
    out.push(...p.items);
    cursor = p.nextCursor;
  } while (cursor !== null);
  return out;
}
