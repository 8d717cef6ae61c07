// Secrets must never reach stderr (the director appends it to task logs) nor the
// response's `log`. Requests carry them in many places (env.bosh.password,
// env.bosh.mbus.cert.private_key, blobstore options, mbus URLs with passwords), at
// depths no fixed path list covers, so redaction walks values by key name and
// scrubs credentials out of URLs inside any string.

export const REDACTED = '<redacted>';

// Keys whose values are secrets wherever they appear. Matched case-insensitively
// after removing `-` and `_`, so `private_key`, `privateKey` and `private-key` match.
const SECRET_KEYS = new Set(
  [
    'password', 'passwd', 'pass', 'secret', 'secret_access_key', 'access_key_id', 'secret_key', 'access_key',
    'private_key', 'privatekey', 'key', 'client_key', 'certificate', 'cert', 'ca', 'ca_cert', 'client_cert',
    'token', 'credentials', 'credentials_source', 'json_key', 'sas_token', 'user_password', 'encryption_key',
    'bosh_ca_cert', 'openssh-key', 'authorized_keys',
  ].map(normalize),
);

function normalize(k: string): string {
  return k.toLowerCase().replace(/[-_]/g, '');
}

export function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(normalize(key));
}

const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/@:]*):([^\s/@]*)@/gi;
const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)/g;

/** Scrubs URL passwords (`nats://user:pass@host` → `nats://user:<redacted>@host`) and PEM blocks. */
export function redactString(s: string): string {
  return s.replace(URL_CREDENTIALS, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`).replace(PEM_BLOCK, REDACTED);
}

/** A deep copy of `value` with secret-named keys replaced and every string scrubbed. */
export function redact<T>(value: T, depth = 0): T {
  if (depth > 64) return REDACTED as unknown as T;
  if (typeof value === 'string') return redactString(value) as unknown as T;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1)) as unknown as T;
  if (value instanceof Error) {
    return { type: value.name, message: redactString(value.message), stack: value.stack ? redactString(value.stack) : undefined } as unknown as T;
  }
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = isSecretKey(k) && v !== null && v !== undefined && v !== '' ? REDACTED : redact(v, depth + 1);
    }
    return out as T;
  }
  return value;
}
