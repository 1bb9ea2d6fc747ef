/** The simulator's command serving for real (sockets: the integration tier). */
import { describe, expect, it } from 'vitest';
import { simulatorCommand } from '../../simulator/command.ts';
import type { SimulatorHandle } from '../../simulator/server.ts';

describe('simulator command', () => {
  it('serves until aborted, then closes and returns 0', async () => {
    const ac = new AbortController();
    const lines: string[] = [];
    let handle: SimulatorHandle | undefined;
    const done = simulatorCommand(['--port', '0', '--profile', 'instant', '--key', 'sk_cli_secret:1'], {
      signal: ac.signal,
      log: (l) => lines.push(l),
      onListening: (h) => (handle = h),
    });
    while (!handle) await new Promise((r) => setTimeout(r, 5));
    const r = await fetch(`${handle.url}/waves/v1/tts`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk_cli_secret', 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hi', voice_id: 'magnus' }),
    });
    expect(r.status).toBe(200);
    ac.abort();
    expect(await done).toBe(0);
    expect(lines.join('\n')).toContain('listening on http://127.0.0.1:');
    expect(lines.join('\n')).not.toContain('sk_cli_secret');
    await expect(fetch(`${handle.url}/waves/v1/health`)).rejects.toThrow();
  });

});
