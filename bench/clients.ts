/**
 * Load-side clients with microsecond timing: keep-alive HTTP requests, SSE streams timed to their
 * first and last event, and a WebSocket request/answer helper. All traffic goes to 127.0.0.1.
 */
import http from 'node:http';
import WebSocket from 'ws';

/** A tiny TTS request: 2 characters at 8 kHz, i.e. 2 KB of PCM back — the gateway, not audio, dominates. */
export const SMALL_TTS_BODY = JSON.stringify({ text: 'Hi', voice_id: 'magnus', sample_rate: 8000 });
export const TTS_SYNC_PATH = '/waves/v1/lightning-v3.1/get_speech';
export const TTS_SSE_PATH = '/waves/v1/lightning-v3.1/stream';
export const TTS_WS_PATH = '/waves/v1/lightning-v3.1/get_speech/stream';

/** Microseconds elapsed since `start` (a `process.hrtime.bigint()` reading). */
export function usSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1000;
}

/** One keep-alive connection; requests go one at a time. */
export function keepAliveAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: 1 });
}

export interface HttpOutcome {
  readonly status: number;
  readonly bytes: number;
}

/** POSTs `body` and reads the whole answer. */
export function post(agent: http.Agent, url: URL, headers: Record<string, string>, body: string): Promise<HttpOutcome> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.setNoDelay(true);
    req.on('error', reject);
    req.end(body);
  });
}

export interface SseTiming {
  readonly status: number;
  /** µs from sending the request to the first `event: audio` frame. */
  readonly firstEventUs: number;
  /** µs from sending the request to the end of the stream (after the `done` frame). */
  readonly lastEventUs: number;
  readonly events: number;
}

/** Opens one SSE TTS stream and times its first and last event. */
export function timeSse(agent: http.Agent, url: URL, headers: Record<string, string>, body: string): Promise<SseTiming> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let firstEventUs = -1;
    let tail = '';
    let events = 0;
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => {
        const text = tail + chunk;
        const n = text.split('\n\n').length - 1;
        if (n > 0 && firstEventUs < 0 && text.includes('event: audio')) firstEventUs = usSince(start);
        events += n;
        tail = text.slice(text.lastIndexOf('\n\n') + 2);
      });
      res.on('end', () => {
        const lastEventUs = usSince(start);
        if (res.statusCode !== 200 || firstEventUs < 0) reject(new Error(`SSE stream failed: status ${res.statusCode}, ${events} events`));
        else resolve({ status: res.statusCode, firstEventUs, lastEventUs, events });
      });
      res.on('error', reject);
    });
    req.setNoDelay(true);
    req.on('error', reject);
    req.end(body);
  });
}

/** Opens a WebSocket with the given credential; resolves once open. */
export function openSocket(url: string, authorization: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization }, perMessageDeflate: false });
    ws.once('open', () => {
      ws.off('error', reject);
      resolve(ws);
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

/**
 * A TTS request over a WebSocket whose answer is exactly one `chunk` frame (2 characters at 8 kHz
 * fit in one), with `complete` held back so that it never interleaves with the measured frames.
 */
export const WS_TTS_REQUEST = JSON.stringify({ text: 'Hi', voice_id: 'magnus', sample_rate: 8000, complete_backoff_ms: 10_000 });

/** Whether a server frame is an audio chunk. */
export function isChunkFrame(data: WebSocket.RawData): boolean {
  const b = data as Buffer;
  // Cheap test on the frame's bytes: frames are small JSON objects with a "status" field.
  return b.includes('"status":"chunk"');
}

/** Closes sockets in batches and waits for them (bounded). */
export async function closeSockets(sockets: readonly WebSocket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          const t = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 2_000);
          ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          ws.close(1000);
        }),
    ),
  );
}
