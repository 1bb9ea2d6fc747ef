/**
 * `voicegate apply -f FILE [--dry-run]`: sends a configuration document to the control plane
 * (`PUT /admin/v1/apply`), which converges the store to it in one revision, and prints what
 * changed (`create account acme-tts`) and the revision. With --dry-run the same change list is
 * computed and rolled back. Token references (`env:`, `file:`) are resolved by the control plane,
 * so no provider token leaves this machine through apply.
 */
import { Views } from '../../adapters/admin-api/client.ts';
import { defineCommand, type Command } from '../command.ts';
import { APPLY_OPTIONS } from '../admin-options.ts';
import { connect, guarded, json, readTextArg } from './admin-common.ts';

const SUMMARY = 'converge the control plane to a configuration document (PUT /admin/v1/apply)';

const command = defineCommand(SUMMARY, APPLY_OPTIONS, async (o, ctx) =>
  guarded(ctx, async () => {
    const client = await connect(ctx, o);
    const text = await readTextArg(ctx, o.file, 'the document');
    const contentType = /\.json$/i.test(o.file) ? 'application/json' : 'application/yaml';
    const { value } = await client.send('PUT', '/admin/v1/apply', Views.apply, { raw: { text, contentType }, query: { dry_run: o.dryRun ? 'true' : undefined } });
    if (o.json) {
      ctx.stdout(json(value));
      return 0;
    }
    const lines = value.changes.map((c) => `${c.action} ${c.resource} ${c.key}`);
    const tail = value.dry_run
      ? `dry run: ${value.changes.length} change${value.changes.length === 1 ? '' : 's'} would be made; nothing changed (revision ${value.revision})`
      : value.changes.length
        ? `applied ${value.changes.length} change${value.changes.length === 1 ? '' : 's'}: revision ${value.revision}`
        : `no changes: the control plane already matches (revision ${value.revision})`;
    ctx.stdout([...lines, tail, ''].join('\n'));
    return 0;
  }),
);

/** `-f FILE` (`-fFILE`, `-f=FILE`) is `--file FILE`: the flag schema has long names only, as every command's does. */
function longFile(a: string): string {
  if (a === '-f') return '--file';
  if (a.startsWith('-f=')) return `--file=${a.slice(3)}`;
  return a.startsWith('-f') && !a.startsWith('--') ? `--file=${a.slice(2)}` : a;
}

export const applyCommand: Command = {
  ...command,
  run: (args, ctx) => command.run(args.map(longFile), ctx),
};
