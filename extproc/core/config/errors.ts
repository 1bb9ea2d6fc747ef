/** One problem in a configuration document, located by its path (`accounts[1].token`). */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** Every problem found while loading a config, reported together so operators fix them at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];

  constructor(source: string, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    super(
      `invalid configuration ${source}:\n` + issues.map((i) => `  ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'),
      options,
    );
    this.issues = issues;
  }
}

/** Formats a zod-style path (`['accounts', 1, 'token']`) as `accounts[1].token`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}
