import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { redact, redactString, REDACTED } from '../../src/log/redact.js';

describe('redact', () => {
  it('scrubs passwords from URLs of any scheme', () => {
    expect(redactString('connect nats://nats:s3cret@10.0.0.6:4222 now')).toBe(`connect nats://nats:${REDACTED}@10.0.0.6:4222 now`);
    expect(redactString('https://mbus:p@ss@0.0.0.0:6868')).not.toContain('p@ss');
  });

  it('replaces PEM blocks, even unterminated ones', () => {
    expect(redactString('key: -----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY----- done')).toBe(`key: ${REDACTED} done`);
    expect(redactString('-----BEGIN CERTIFICATE-----\nabc')).toBe(REDACTED);
  });

  it('replaces secret-named keys at any depth and leaves the rest', () => {
    const out = redact({ a: { b: [{ password: 'x', private_key: 'y', secretAccessKey: 'z', name: 'keep' }] }, cert: { ca: 'c' } });
    expect(out).toEqual({ a: { b: [{ password: REDACTED, private_key: REDACTED, secretAccessKey: REDACTED, name: 'keep' }] }, cert: REDACTED });
  });

  it('never returns a string containing a planted password (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9]{8,20}$/), fc.constantFrom('nats', 'https', 'qemu+ssh'), (pw, scheme) => {
        const planted = { env: { bosh: { password: pw } }, url: `${scheme}://user:${pw}@host:1/` };
        expect(JSON.stringify(redact(planted))).not.toContain(pw);
      }),
    );
  });
});
