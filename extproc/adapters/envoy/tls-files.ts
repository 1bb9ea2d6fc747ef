/**
 * Certificate files for the gRPC services and their client, re-read while the process runs.
 *
 * grpc-js (1.14) takes rotating certificates through its `experimental.CertificateProvider`
 * interface: the server swaps its TLS context (`setSecureContext`) whenever the provider reports new
 * material, without closing the listener. grpc-js ships a file-watching provider, but it publishes
 * whatever it read — a half-written file or a certificate paired with the previous key would turn
 * into "no credentials" and every handshake would be dropped. This one validates each new set as a
 * whole (`tls.createSecureContext`: PEM parses, key matches certificate) and keeps serving the last
 * good set otherwise. It polls file contents instead of using `fs.watch`, because Kubernetes
 * rotates a mounted Secret by swapping a `..data` symlink, which inotify on the file misses.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { experimental } from '@grpc/grpc-js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** Paths of PEM files. A server needs all three; a client needs `ca`, and `cert`+`key` to present one. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

/** How often the files are compared with what is loaded. Secret rotation is a matter of minutes. */
export const DEFAULT_TLS_RELOAD_MS = 10_000;

interface Material {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** A certificate file that cannot be used; names the file, never its contents. */
export class TlsFilesError extends Error {
  override readonly name = 'TlsFilesError';
}

export interface WatchedTlsFilesOptions {
  readonly intervalMs?: number;
  /** After new material was validated and handed to grpc-js. */
  readonly onReload?: () => void;
  /** Changed files that do not form a usable set; the previous set stays in use. */
  readonly onRejected?: (err: Error) => void;
}

function readSync(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFilesError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** Throws unless the set forms a TLS context: each PEM parses and the key belongs to the certificate. */
function validate(files: TlsFiles, m: Material): void {
  try {
    createSecureContext({ ca: m.ca, ...(m.cert && m.key ? { cert: m.cert, key: m.key } : {}) });
  } catch (err) {
    // OpenSSL's reason (`key values mismatch`, `no start line`) names no secret.
    const reason = (err as Error).message;
    throw new TlsFilesError(`the TLS files ${[files.cert, files.key, files.ca].filter(Boolean).join(', ')} do not form a usable set: ${reason}`, { cause: err });
  }
}

function same(a: Material, b: Material): boolean {
  const eq = (x?: Buffer, y?: Buffer) => (x === undefined ? y === undefined : y !== undefined && x.equals(y));
  return eq(a.ca, b.ca) && eq(a.cert, b.cert) && eq(a.key, b.key);
}

/**
 * A grpc-js certificate provider over three PEM files. Construction reads and validates them at
 * once (a missing or broken file fails the start, it never degrades to plaintext); afterwards the
 * files are polled while grpc-js listens, and `close()` stops the polling.
 *
 * @example
 * const files = new WatchedTlsFiles({ cert: 'server.crt', key: 'server.key', ca: 'ca.crt' });
 * const creds = grpc.experimental.createCertificateProviderServerCredentials(files, files, true);
 */
export class WatchedTlsFiles implements CertificateProvider {
  private current: Material;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  private closed = false;

  constructor(
    private readonly files: TlsFiles,
    private readonly opts: WatchedTlsFilesOptions = {},
  ) {
    if ((files.cert === undefined) !== (files.key === undefined)) throw new TlsFilesError('a TLS certificate and its key are given together');
    const m: Material = {
      ca: readSync(files.ca, 'CA certificate'),
      ...(files.cert && files.key ? { cert: readSync(files.cert, 'certificate'), key: readSync(files.key, 'private key') } : {}),
    };
    validate(files, m);
    this.current = m;
  }

  /** Compares the files with the loaded set once; resolves after any listener was told. */
  async refresh(): Promise<void> {
    if (this.reading || this.closed) return;
    this.reading = true;
    try {
      const [ca, cert, key] = await Promise.all([
        readFile(this.files.ca),
        this.files.cert ? readFile(this.files.cert) : undefined,
        this.files.key ? readFile(this.files.key) : undefined,
      ]);
      const next: Material = { ca, ...(cert && key ? { cert, key } : {}) };
      if (same(next, this.current)) return;
      validate(this.files, next);
      this.current = next;
      this.publish();
      this.opts.onReload?.();
    } catch (err) {
      this.opts.onRejected?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.reading = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.watch();
    process.nextTick(() => listener({ caCertificate: this.current.ca }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.watch();
    const { cert, key } = this.current;
    // A client without a certificate of its own: grpc-js then offers none.
    process.nextTick(() => listener(cert && key ? { certificate: cert, privateKey: key } : null));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  private publish(): void {
    const { ca, cert, key } = this.current;
    for (const l of this.caListeners) l({ caCertificate: ca });
    if (cert && key) for (const l of this.identityListeners) l({ certificate: cert, privateKey: key });
  }

  private watch(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.refresh(), this.opts.intervalMs ?? DEFAULT_TLS_RELOAD_MS);
    this.timer.unref();
  }
}
