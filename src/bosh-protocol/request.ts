// The request envelope the director and `bosh create-env` send on stdin
// (docs-bosh content/cpi-api-rpc.md). Only the envelope is checked here; each
// method's arguments are checked by its own schema in src/cpi/.
import { z } from 'zod';
import { CpiError, show } from '../errors.js';
import { tooDeep, tooDeepMessage } from './depth.js';

export const ContextSchema = z
  .object({
    director_uuid: z.string().optional(),
    request_id: z.string().optional(),
    vm: z
      .object({ stemcell: z.object({ api_version: z.number().int().optional() }).passthrough().optional() })
      .passthrough()
      .optional(),
  })
  // cpi-config properties are merged into the context at top level.
  .passthrough();

export const RequestSchema = z.object({
  method: z.string().min(1),
  arguments: z.array(z.unknown()),
  context: ContextSchema.default({}),
  api_version: z.union([z.literal(1), z.literal(2), z.literal(3)]).optional(),
});

export type CpiRequest = z.infer<typeof RequestSchema>;

/** Parses stdin. Anything that is not a well-formed request is a CpiError (bosh-cpi-go does the same). */
export function parseRequest(raw: string): CpiRequest {
  if (raw.trim() === '') throw new CpiError('Empty request: expected one JSON object on stdin');
  // Before parsing: what comes after the parse recurses, and must never meet a depth
  // that overflows the stack.
  const deep = tooDeep(raw);
  if (deep) throw new CpiError(tooDeepMessage(deep));
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new CpiError(`Request is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CpiError(`Request must be a JSON object, got ${Array.isArray(json) ? 'an array' : show(json)}`);
  }
  const parsed = RequestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || 'request';
    const value = (json as Record<string, unknown>)[String(issue.path[0])];
    const expected: Record<string, string> = {
      method: 'a non-empty string naming a CPI method',
      arguments: 'an array',
      context: 'an object',
      api_version: '1, 2 or 3 (or absent)',
    };
    throw new CpiError(
      `Invalid request: field "${field}" is ${value === undefined ? 'missing' : show(value)}, expected ${expected[String(issue.path[0])] ?? issue.message}`,
    );
  }
  return parsed.data;
}
