/** Helpers for the simulator's own tests: a WebSocket client that reads frames in order. */
import WebSocket from 'ws';

export interface WsProbe {
  readonly ws: WebSocket;
  /** Next text frame, parsed as JSON (rejects after `timeoutMs`). */
  next(timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens a WebSocket; rejects with the HTTP status when the upgrade is refused. */
export function openWs(url: string, headers: Record<string, string> = {}): Promise<WsProbe> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const frames: Record<string, unknown>[] = [];
    const waiters: ((f: Record<string, unknown>) => void)[] = [];
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as Record<string, unknown>;
      const w = waiters.shift();
      if (w) w(f);
      else frames.push(f);
    });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += String(c)));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused ${res.statusCode}`), { status: res.statusCode, body })));
    });
    ws.on('error', (e) => reject(e));
    ws.on('open', () =>
      resolve({
        ws,
        closed,
        next: (timeoutMs = 5000) =>
          new Promise((res, rej) => {
            const f = frames.shift();
            if (f) return res(f);
            const t = setTimeout(() => rej(new Error('no frame in time')), timeoutMs);
            waiters.push((x) => {
              clearTimeout(t);
              res(x);
            });
          }),
      }),
    );
  });
}
