/**
 * Benchmark child: a stub upstream that answers every request, whatever its method and path, with
 * the same fixed body once the request body has been read. `--body json|audio`.
 *
 * `json` (the default) is the upstream every gateway and peer is compared on for REST: Portkey's
 * gateway on Node 20 fails on any upstream answer that is not JSON, so a JSON answer is the one
 * thing all of them can relay. `audio` answers `audio/wav` bytes, to show that failure.
 */
import http from 'node:http';
import { arg, serve } from './lifecycle.ts';

/** About 2 KB, like the simulator's answer to the small TTS request, so payload size stays comparable. */
const STUB_JSON = JSON.stringify({ status: 'ok', request_id: 'bench-stub', padding: 'x'.repeat(2000) });
const STUB_AUDIO = Buffer.alloc(2048, 0x11);

await serve(async () => {
  const audio = arg('body', 'json') === 'audio';
  const body = audio ? STUB_AUDIO : Buffer.from(STUB_JSON);
  const headers = { 'content-type': audio ? 'audio/wav' : 'application/json', 'content-length': String(body.length) };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, headers);
      res.end(body);
    });
  });
  // Gateways keep pooled connections open between rounds; Node's 5 s default would close them.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
});
