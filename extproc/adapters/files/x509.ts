/**
 * Just enough X.509 (RFC 5280) to issue development certificates with node:crypto alone: Node can
 * make keys and sign bytes but has no API that writes a certificate, and the `openssl` binary is
 * missing from slim images (node:20-slim) where `voicegate certs` also runs. The DER is written by
 * hand — a dozen element types — and every certificate is ECDSA P-256 with SHA-256.
 */
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

type Der = Buffer;

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Der {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const seq = (...items: Der[]): Der => tlv(0x30, ...items);
const set = (...items: Der[]): Der => tlv(0x31, ...items);
const explicit = (n: number, inner: Der): Der => tlv(0xa0 | n, inner);
const octets = (b: Buffer): Der => tlv(0x04, b);
const bool = (v: boolean): Der => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
const utf8 = (s: string): Der => tlv(0x0c, Buffer.from(s, 'utf8'));

/** A non-negative INTEGER from big-endian bytes (a leading 0x00 keeps the sign bit clear). */
function integer(bytes: Buffer): Der {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  return tlv(0x02, (b[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Der {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function bitString(bytes: Buffer, unusedBits = 0): Der {
  return tlv(0x03, Buffer.from([unusedBits]), bytes);
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(d: Date): Der {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'));
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyId: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

function name(commonName: string): Der {
  return seq(set(seq(oid(OID.organization), utf8('voicegate development'))), set(seq(oid(OID.commonName), utf8(commonName))));
}

function extension(id: string, critical: boolean, value: Der): Der {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

/** SHA-1 of the subjectPublicKey bits, the key identifier of RFC 5280 §4.2.1.2 (1). */
function keyId(spki: Buffer): Buffer {
  // The SPKI is SEQUENCE { AlgorithmIdentifier, BIT STRING }; for P-256 the BIT STRING holds the
  // 65-byte uncompressed point, the last 65 bytes of the encoding.
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

function subjectAltNames(names: readonly string[]): Der {
  return seq(
    ...names.map((n) => {
      const family = isIP(n);
      if (family === 0) return tlv(0x82, Buffer.from(n, 'ascii')); // [2] dNSName
      const bytes = family === 4 ? Buffer.from(n.split('.').map(Number)) : ipv6Bytes(n);
      return tlv(0x87, bytes); // [7] iPAddress
    }),
  );
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

export interface CertificateRequest {
  readonly commonName: string;
  /** The subject's public key (P-256). */
  readonly publicKey: KeyObject;
  /** The issuer's private key; the certificate is self-signed when `issuer` is absent. */
  readonly signingKey: KeyObject;
  readonly issuer?: { readonly commonName: string; readonly publicKey: KeyObject };
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** `ca`: may sign certificates; `server` / `client`: a TLS leaf for that role. */
  readonly role: 'ca' | 'server' | 'client';
  /** DNS names and IP addresses (servers: what clients dial). */
  readonly altNames?: readonly string[];
}

/** A DER-encoded X.509 v3 certificate, as PEM. */
export function issueCertificate(req: CertificateRequest): string {
  const spki = req.publicKey.export({ type: 'spki', format: 'der' });
  const issuerKey = req.issuer ? req.issuer.publicKey : req.publicKey;
  const issuerSpki = issuerKey.export({ type: 'spki', format: 'der' });
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const sigAlg = seq(oid(OID.ecdsaWithSha256));
  const extensions = [
    extension(OID.basicConstraints, true, req.role === 'ca' ? seq(bool(true), integer(Buffer.from([0]))) : seq()),
    // digitalSignature (bit 0), plus keyCertSign and cRLSign (bits 5, 6) for the CA.
    extension(OID.keyUsage, true, req.role === 'ca' ? bitString(Buffer.from([0x86]), 1) : bitString(Buffer.from([0x80]), 7)),
    ...(req.role === 'ca' ? [] : [extension(OID.extKeyUsage, false, seq(oid(req.role === 'server' ? OID.serverAuth : OID.clientAuth)))]),
    extension(OID.subjectKeyId, false, octets(keyId(spki))),
    extension(OID.authorityKeyId, false, seq(tlv(0x80, keyId(issuerSpki)))),
    ...(req.altNames && req.altNames.length > 0 ? [extension(OID.subjectAltName, false, subjectAltNames(req.altNames))] : []),
  ];
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    sigAlg,
    name(req.issuer?.commonName ?? req.commonName),
    seq(time(req.notBefore), time(req.notAfter)),
    name(req.commonName),
    spki,
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: req.signingKey, dsaEncoding: 'der' });
  const der = seq(tbs, sigAlg, bitString(signature));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`;
}
