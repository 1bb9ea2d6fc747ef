/** Benchmark child: the simulator of api.smallest.ai. `--profile instant|realistic [--first-audio-ms N] [--speed-factor X]` */
import { startSimulator } from '../../simulator/server.ts';
import { BENCH_UNITS, providerKeys } from '../config.ts';
import { arg, serve } from './lifecycle.ts';

await serve(async () => {
  const profile = arg('profile', 'instant') === 'realistic' ? 'realistic' : 'instant';
  const sim = await startSimulator({
    host: '127.0.0.1',
    port: 0,
    profile,
    accounts: providerKeys().map((key) => ({ key, units: BENCH_UNITS })),
    wsConnectionsPerUnit: 5,
    firstAudioMs: Number(arg('first-audio-ms', '100')),
    speedFactor: Number(arg('speed-factor', '1')),
  });
  return { port: sim.port, close: () => sim.close() };
});
