/**
 * `voicegate certs [--out .voicegate/certs] [--name extproc]… [--days 365] [--force]`: a development
 * CA, a server certificate for `voicegate extproc` and a client certificate for Envoy or the edge,
 * so mutual TLS between them can be tried without a PKI. Production certificates come from the
 * organisation's CA (cert-manager, Vault, …); any PEM files work with --tls-cert/--tls-key/--tls-ca.
 */
import { DevCertificateError, writeDevCertificates } from '../../adapters/files/dev-certificates.ts';
import { defineCommand, report } from '../command.ts';
import { CERTS_OPTIONS } from '../options.ts';

export const certsCommand = defineCommand('a development CA plus server and client certificates for gRPC mutual TLS', CERTS_OPTIONS, async (o, ctx) => {
  try {
    const r = writeDevCertificates({ dir: o.out, serverNames: o.name, days: o.days, force: o.force, ...(o.owner ? { owner: o.owner } : {}) });
    const f = r.files;
    ctx.stdout(
      [
        r.kind === 'kept' ? `kept the existing certificates in ${o.out} (--force replaces them)` : `wrote a development CA and certificates to ${o.out} (private keys mode 0600)`,
        `  extproc:  --tls-cert ${f.serverCert} --tls-key ${f.serverKey} --tls-ca ${f.caCert}`,
        `  edge:     --authz-ca ${f.caCert} --authz-cert ${f.clientCert} --authz-key ${f.clientKey}`,
        '',
      ].join('\n'),
    );
    return 0;
  } catch (err) {
    if (err instanceof DevCertificateError) {
      report(ctx, err.message);
      return 1;
    }
    throw err;
  }
});
