import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'extproc/**/*.test.ts', 'simulator/**/*.test.ts', 'bench/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites start real servers on ephemeral ports; two cores do not gain from more forks.
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain `N passed, N failed` closing line.
    reporters: ['default', 'json'],
    outputFile: { json: '.voicegate/test-results.json' },
  },
});
