/** The admin API contract on PGlite in memory (the embedded default's engine). */
import { randomBytes } from 'node:crypto';
import { openPgliteControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { adminApiSuite } from './admin-api-suite.ts';

adminApiSuite('PGlite', async () => {
  const kek = new Keyring([{ id: 'k1', key: new Uint8Array(randomBytes(32)) }]);
  const opened = await openPgliteControlStore({ keyring: kek });
  return { store: opened.store, kek, close: () => opened.close() };
});
