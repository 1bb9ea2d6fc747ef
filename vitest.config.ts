import { defineConfig } from 'vitest/config';

/**
 * Three tiers, all run by `npm test`:
 * - unit: beside the code, no sockets (test/setup/no-sockets.ts makes listen/connect throw);
 * - integration: test/, against the machine's real PostgreSQL and NATS, the simulator, in-process servers;
 * - process: spawned `voicegate` binaries (test/process/).
 * `npm run test:unit` / `test:integration` / `test:process` run one tier.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites start real servers on ephemeral ports; two cores do not gain from more forks.
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain `N passed, N failed` closing line.
    reporters: ['default', 'json'],
    outputFile: { json: '.voicegate/test-results.json' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['extproc/**/*.test.ts', 'simulator/**/*.test.ts', 'bench/**/*.test.ts'],
          setupFiles: ['test/setup/no-sockets.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: ['test/process/**'] },
      },
      {
        extends: true,
        test: { name: 'process', include: ['test/process/**/*.test.ts'] },
      },
    ],
  },
});
