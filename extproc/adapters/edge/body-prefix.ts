/**
 * Reads the start of a request body for the decision, as Envoy's `with_request_body` with
 * `allow_partial_message: true` does: at most `limit` bytes go to the decision, the whole body
 * still goes upstream (the bytes read here first, then the rest of the stream).
 */
import type { Readable } from 'node:stream';

export interface BodyPrefix {
  /** Every chunk read so far, in order (may hold more than `limit` bytes in total). */
  readonly chunks: readonly Buffer[];
  /** The body as the decision sees it: the first `limit` bytes at most. */
  readonly forDecision: Uint8Array;
  /** More body exists than the decision saw. */
  readonly partial: boolean;
  /** The stream has ended; nothing more to read. */
  readonly complete: boolean;
}

/** Thrown when the caller goes away while the body is being read. */
export class ClientAbortedError extends Error {
  override readonly name = 'ClientAbortedError';
}

/** Thrown when the bytes the decision needs do not arrive within the deadline. */
export class BodyTimeoutError extends Error {
  override readonly name = 'BodyTimeoutError';
}

/**
 * Reads until `limit` bytes or the end of the stream; leaves the stream paused, unread rest intact.
 * With `timeoutMs` > 0, rejects with {@link BodyTimeoutError} when that point is not reached in time.
 */
export function readBodyPrefix(stream: Readable, limit: number, timeoutMs = 0): Promise<BodyPrefix> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            cleanup();
            stream.pause();
            reject(new BodyTimeoutError('request body not read in time'));
          }, timeoutMs)
        : undefined;
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (complete: boolean) => {
      cleanup();
      const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
      resolve({
        chunks,
        forDecision: all.subarray(0, Math.min(limit, total)),
        partial: !complete || total > limit,
        complete,
      });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= limit) {
        stream.pause();
        finish(stream.readableEnded);
      }
    };
    const onEnd = () => finish(true);
    const onClose = () => {
      cleanup();
      reject(new ClientAbortedError('client closed the request before its body was read'));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new ClientAbortedError('client request failed', { cause: err }));
    };
    const cleanup = () => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', onError);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', onError);
  });
}
