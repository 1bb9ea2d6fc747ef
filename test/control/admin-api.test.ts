/** The admin API contract on PGlite in memory (the embedded default's engine). */
import { randomBytes } from 'node:crypto';
import { openPgliteControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { adminApiSuite } from './admin-api-suite.ts';

adminApiSuite('PGlite', async () => {
  const opened = await openPgliteControlStore({ keyring: new Keyring([{ id: 'k1', key: new Uint8Array(randomBytes(32)) }]) });
  return { store: opened.store, close: () => opened.close() };
});
