/**
 * Benchmark child: the Node floor — the least a Node.js reverse proxy does, with no decision at
 * all. `--upstream URL`. Requests are piped to the upstream over a keep-alive pool and answers
 * piped back; WebSocket upgrades are accepted once the upstream socket is open and frames are
 * relayed with `ws`, as the edge does. Whatever the edge adds above this process is the gateway's
 * own cost; what this adds over a direct call is Node's.
 */
import http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { arg, serve } from './lifecycle.ts';

/** Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own, never forwarded. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function forwardable(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  return out;
}

/** 1005/1006/1015 are reported locally, never sent: relay them as a normal closure. */
function sendable(code: number): number {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code < 5000) ? code : 1000;
}

await serve(async () => {
  const upstream = new URL(arg('upstream'));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer((req, res) => {
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: forwardable(req.headers), agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, forwardable(answer.headers));
        answer.pipe(res);
      },
    );
    up.setNoDelay(true);
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(up);
  });
  server.keepAliveTimeout = 120_000;

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    const target = `ws://${upstream.host}${req.url ?? '/'}`;
    const headers: Record<string, string> = {};
    if (req.headers.authorization) headers['authorization'] = req.headers.authorization;
    const up = new WebSocket(target, { headers, perMessageDeflate: false });
    up.once('error', () => socket.destroy());
    up.once('unexpected-response', (_r, answer) => {
      socket.end(`HTTP/1.1 ${answer.statusCode ?? 502} Upstream Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      up.terminate();
    });
    up.once('open', () => {
      wss.handleUpgrade(req, socket, head, (client) => {
        client.on('message', (data, isBinary) => up.send(data, { binary: isBinary }));
        up.on('message', (data, isBinary) => client.send(data, { binary: isBinary }));
        client.on('close', (code) => up.close(sendable(code)));
        up.on('close', (code) => client.close(sendable(code)));
        client.on('error', () => up.terminate());
        up.on('error', () => client.terminate());
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
});
