/** Benchmark child: the decision service alone (ext_authz Check over gRPC). `--upstream URL` */
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { createLogger } from '../../extproc/main/logger.ts';
import { benchSnapshot } from '../config.ts';
import { arg, serve } from './lifecycle.ts';

await serve(async () => {
  const source = new StaticSnapshotSource(await benchSnapshot(arg('upstream')));
  const logger = createLogger({ level: 'silent', name: 'bench-extproc' });
  const server = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: createAuthorizer(source), source, logger });
  return { port: server.port, close: () => server.close(500) };
});
