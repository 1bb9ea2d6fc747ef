/**
 * The layer rules of .dependency-cruiser.cjs hold for the repository, and they are not vacuous:
 * a copy of the layout with one backward import of each kind is rejected rule by rule.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cruise, type ICruiseOptions, type IConfiguration, type IViolation } from 'dependency-cruiser';
import { afterAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const config = require('../../.dependency-cruiser.cjs') as IConfiguration;
const repo = join(import.meta.dirname, '..', '..');

async function violations(baseDir: string, roots: string[]): Promise<IViolation[]> {
  const options: ICruiseOptions = {
    validate: true,
    ruleSet: { forbidden: config.forbidden ?? [] },
    baseDir,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    // Package `exports` maps (tsx/esm/api) resolve as Node resolves them.
    ...(config.options?.enhancedResolveOptions ? { enhancedResolveOptions: config.options.enhancedResolveOptions } : {}),
  };
  const result = await cruise(roots, options);
  if (typeof result.output === 'string') throw new Error('expected a cruise result object');
  return result.output.summary.violations;
}

describe('layers', () => {
  it('extproc/, simulator/, protos/, bin/ and dev/ follow every rule', async () => {
    const roots = ['extproc', 'simulator', 'protos', 'bin', 'dev'].filter((d) => existsSync(join(repo, d)));
    const found = await violations(repo, roots);
    expect(found.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`)).toEqual([]);
  }, 60_000);

  describe('a backward import of each kind is caught', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vg-layers-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const file = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    file('extproc/core/decision/decide.ts', "import { x } from '../../adapters/edge/server.ts';\nexport const d = x;\n");
    file('extproc/adapters/edge/server.ts', "import { n } from '../nats/sink.ts';\nimport { m } from '../../main/main.ts';\nimport { s } from '../../../simulator/server.ts';\nexport const x = n + m + s;\n");
    file('extproc/adapters/nats/sink.ts', 'export const n = 1;\n');
    file('extproc/main/main.ts', "import { t } from '../../test/helpers.ts';\nexport const m = t;\n");
    file('simulator/server.ts', "import { c } from '../extproc/core/config/snapshot.ts';\nexport const s = c;\n");
    file('extproc/core/config/snapshot.ts', "import { d } from '../decision/decide.ts';\nexport const c = 1 + (d ? 0 : 0);\n");
    file('test/helpers.ts', 'export const t = 1;\n');

    it('reports each rule on the offending edge', async () => {
      const found = await violations(dir, ['extproc', 'simulator']);
      const seen = new Set(found.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`));
      for (const expected of [
        'core-imports-only-core: extproc/core/decision/decide.ts → extproc/adapters/edge/server.ts',
        'adapters-never-import-each-other: extproc/adapters/edge/server.ts → extproc/adapters/nats/sink.ts',
        'adapters-never-import-main: extproc/adapters/edge/server.ts → extproc/main/main.ts',
        'gateway-never-imports-simulator-tests-or-dev: extproc/adapters/edge/server.ts → simulator/server.ts',
        'gateway-never-imports-tests: extproc/main/main.ts → test/helpers.ts',
        'simulator-stands-alone: simulator/server.ts → extproc/core/config/snapshot.ts',
        'core-folders-in-order: extproc/core/config/snapshot.ts → extproc/core/decision/decide.ts',
      ]) {
        expect(seen, `${expected} in ${[...seen].join("; ")}`).toContain(expected);
      }
      expect(found.some((v) => v.rule.name === 'no-cycles-in-the-gateway')).toBe(true);
    }, 60_000);
  });
});
