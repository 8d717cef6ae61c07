import type { CpiErrorJson } from '../errors.js';

/** The response envelope: all three keys, always. */
export interface CpiResponse {
  result: unknown;
  error: CpiErrorJson | null;
  log: string;
}
