import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parseSimulatorArgs, resolveAccounts, simulatorCommand, UsageError } from './command.ts';

describe('simulator command line', () => {
  it('parses flags and keys with units', () => {
    const p = parseSimulatorArgs(['--port', '0', '--host=127.0.0.1', '--profile', 'instant', '--key', 'sk_a:3', '--key', 'sk_b', '--allow-query-token']);
    expect(p.options).toEqual({ port: 0, host: '127.0.0.1', profile: 'instant', allowQueryToken: true });
    expect(p.keys).toEqual([{ key: 'sk_a', units: 3 }, { key: 'sk_b', units: 4 }]);
    expect(() => parseSimulatorArgs(['--profile', 'slow'])).toThrow(UsageError);
    expect(() => parseSimulatorArgs(['--key', 'k:zero'])).toThrow(UsageError);
    expect(() => parseSimulatorArgs(['--port'])).toThrow(UsageError);
  });

  it('uses the development keys without --key or --config, and config accounts with --config', async () => {
    const tts = (await readFile(new URL('../examples/dev/smallest-tts.key', import.meta.url), 'utf8')).trim();
    const dev = await resolveAccounts(parseSimulatorArgs([]));
    expect(dev).toContainEqual({ key: tts, units: 4 });
    expect(dev).toHaveLength(3);
    const fromConfig = await resolveAccounts(parseSimulatorArgs(['--config', new URL('../examples/voicegate.yaml', import.meta.url).pathname]));
    expect(fromConfig).toContainEqual({ key: tts, units: 4 });
  });

  it('exits 2 on bad usage', async () => {
    expect(await simulatorCommand(['--bogus'], { log: () => {} })).toBe(2);
  });
});
