/**
 * How the edge ends an SSE stream on policy (a re-check, token expiry, maximum duration): a last
 * event in the provider's frame shape, then the end of the body — but only where an event ends.
 *
 * The provider's frames are `event: audio` + `data: {"audio":…,"done":false,"status":"206"}` and a
 * final `data: {"status":"200","done":true}` (../shared/smallest-api.md). The edge's last event is
 * `event: error` with `data: {"status":"error","done":true,"message":…,"error":…}`: `done: true`
 * because clients loop until `done === true` and nothing follows it; `status` and the event name
 * say it is not a success; `message` and `error` both, as for the WebSocket error frame, since
 * clients read either.
 *
 * Relayed bytes are chunks as the provider wrote them, not events: if the stream is cut in the
 * middle of an event, an appended event would be glued to that half line and the client would
 * parse garbage. There the edge cuts the connection instead (the client sees an incomplete body,
 * an error in every HTTP client) — never a corrupt frame.
 */

/** The last event of a stream the gateway ended on policy. */
export function sseErrorEvent(message: string): string {
  // JSON.stringify never emits a raw newline, so the data stays one `data:` line (WHATWG SSE §9.2.6).
  return `event: error\ndata: ${JSON.stringify({ status: 'error', done: true, message, error: message })}\n\n`;
}

/** Tracks whether the bytes relayed so far end where an event ends (or nothing was relayed). */
export interface SseBoundary {
  push(chunk: Uint8Array): void;
  readonly atBoundary: boolean;
}

/** An event ends at a blank line: LF LF, CR CR, or CRLF CRLF (WHATWG SSE §9.2.5). */
export function sseBoundary(): SseBoundary {
  // Four bytes hold the longest ending (CRLF CRLF); the stream itself is never kept.
  let tail = Buffer.alloc(0);
  return {
    push(chunk) {
      if (chunk.byteLength === 0) return;
      const joined = Buffer.concat([tail, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)]);
      tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 4)));
    },
    get atBoundary() {
      if (tail.length === 0) return true;
      const s = tail.toString('latin1');
      return s.endsWith('\n\n') || s.endsWith('\r\r') || s.endsWith('\r\n\r\n');
    },
  };
}
