import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { issueCertificate } from './x509.ts';

const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });

describe('issueCertificate', () => {
  it('issues a CA and a server leaf that Node parses, with the names, validity and chain asked for', () => {
    const ca = key();
    const server = key();
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2051-01-01T00:00:00Z'); // GeneralizedTime past 2049
    const caPem = issueCertificate({ commonName: 'test CA', publicKey: ca.publicKey, signingKey: ca.privateKey, notBefore, notAfter, role: 'ca' });
    const leafPem = issueCertificate({
      commonName: 'extproc', publicKey: server.publicKey, signingKey: ca.privateKey, issuer: { commonName: 'test CA', publicKey: ca.publicKey },
      notBefore, notAfter, role: 'server', altNames: ['localhost', 'extproc', '127.0.0.1', '::1'],
    });
    const caCert = new X509Certificate(caPem);
    const leaf = new X509Certificate(leafPem);
    expect(caCert.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(caCert.verify(ca.publicKey)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.verify(server.publicKey)).toBe(false);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.subjectAltName).toBe('DNS:localhost, DNS:extproc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(leaf.checkHost('extproc')).toBe('extproc');
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(new Date(leaf.validTo).toISOString()).toBe(notAfter.toISOString());
    expect(new Date(leaf.validFrom).toISOString()).toBe(notBefore.toISOString());
  });
});
