// The response envelope: all three keys, always (the director validates exactly this
// shape; anything else on stdout is an InvalidResponse).
import { CpiError } from '../errors.js';
import { redactString } from '../log/redact.js';
import type { CpiResponse } from './response-shape.js';

export type { CpiResponse };

export function success(result: unknown, log: string): CpiResponse {
  return { result: result === undefined ? null : result, error: null, log };
}

/** Any thrown value becomes a typed error; unknown errors are CpiErrors (never a stack trace on stdout). */
export function failure(err: unknown, log: string): CpiResponse {
  const e = err instanceof CpiError ? err : new CpiError(`Unexpected error: ${err instanceof Error ? err.message : String(err)}`);
  const json = e.toJSON();
  return { result: null, error: { ...json, message: redactString(json.message) }, log };
}

export function serialize(res: CpiResponse): string {
  return JSON.stringify(res, (_k, v) => (typeof v === 'bigint' ? Number(v) : v));
}
