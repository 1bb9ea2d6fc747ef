/**
 * A development certificate authority and the two certificates mutual TLS between Envoy (or the
 * edge) and `voicegate extproc` needs, written into one folder. Keys are ECDSA P-256 from
 * node:crypto; private keys are written mode 0600 and never printed.
 */
import { chownSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { issueCertificate } from './x509.ts';

/** The files of a set, relative to its folder. */
export const DEV_CERT_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'client.crt',
  clientKey: 'client.key',
} as const;

/** The server certificate always names these, so `npm start` and local clients verify. */
export const DEFAULT_SERVER_NAMES = ['localhost', '127.0.0.1', '::1'] as const;

export interface DevCertificateOptions {
  readonly dir: string;
  /** More DNS names / IP addresses for the server certificate (`extproc`, `extproc.ns.svc`). */
  readonly serverNames?: readonly string[];
  readonly days: number;
  /** Replace an existing set; otherwise an existing complete set is kept. */
  readonly force?: boolean;
  /** Give the files to this user (and group), for a container that runs as another user. */
  readonly owner?: { readonly uid: number; readonly gid: number };
  readonly now?: Date;
}

export type DevCertificateResult = { readonly kind: 'created' | 'kept'; readonly files: Record<keyof typeof DEV_CERT_FILES, string> };

export class DevCertificateError extends Error {
  override readonly name = 'DevCertificateError';
}

function keyPair() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Writes beside the target, then renames: a reader never sees half a file, and the mode is set at creation. */
function writeAtomic(path: string, text: string, mode: number, owner: DevCertificateOptions['owner']): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode, flag: 'wx' });
  if (owner) chownSync(tmp, owner.uid, owner.gid);
  renameSync(tmp, path);
}

export function writeDevCertificates(opts: DevCertificateOptions): DevCertificateResult {
  const files = Object.fromEntries(Object.entries(DEV_CERT_FILES).map(([k, f]) => [k, join(opts.dir, f)])) as DevCertificateResult['files'];
  const present = Object.values(files).filter((f) => existsSync(f));
  if (!opts.force && present.length === Object.keys(files).length) return { kind: 'kept', files };
  if (!opts.force && present.length > 0) throw new DevCertificateError(`${opts.dir} holds part of a certificate set (${present.join(', ')}); pass --force to replace it`);

  const now = opts.now ?? new Date();
  // A minute of slack for clocks that differ between the containers of one machine.
  const notBefore = new Date(now.getTime() - 60_000);
  const notAfter = new Date(now.getTime() + opts.days * 86_400_000);
  const ca = keyPair();
  const caCert = issueCertificate({ commonName: 'voicegate development CA', publicKey: ca.publicKey, signingKey: ca.privateKey, notBefore, notAfter, role: 'ca' });
  const issuer = { commonName: 'voicegate development CA', publicKey: ca.publicKey };
  const server = keyPair();
  const serverNames = [...new Set([...DEFAULT_SERVER_NAMES, ...(opts.serverNames ?? [])])];
  const serverCert = issueCertificate({ commonName: serverNames.find((n) => n !== 'localhost' && !/^[\d.:]+$/.test(n)) ?? 'localhost', publicKey: server.publicKey, signingKey: ca.privateKey, issuer, notBefore, notAfter, role: 'server', altNames: serverNames });
  const client = keyPair();
  const clientCert = issueCertificate({ commonName: 'voicegate envoy', publicKey: client.publicKey, signingKey: ca.privateKey, issuer, notBefore, notAfter, role: 'client' });
  const pem = (k: typeof ca.privateKey) => k.export({ type: 'pkcs8', format: 'pem' }) as string;

  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  if (opts.owner) chownSync(opts.dir, opts.owner.uid, opts.owner.gid);
  writeAtomic(files.caKey, pem(ca.privateKey), 0o600, opts.owner);
  writeAtomic(files.serverKey, pem(server.privateKey), 0o600, opts.owner);
  writeAtomic(files.clientKey, pem(client.privateKey), 0o600, opts.owner);
  writeAtomic(files.caCert, caCert, 0o644, opts.owner);
  writeAtomic(files.serverCert, serverCert, 0o644, opts.owner);
  writeAtomic(files.clientCert, clientCert, 0o644, opts.owner);
  return { kind: 'created', files };
}
