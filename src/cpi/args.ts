// Positional argument schemas: each CPI method declares its arguments by name, with a
// zod schema and a plain-words description of what is expected, so a bad argument is
// a CloudError that names the argument, the value and the expectation.
import { z } from 'zod';
import { CloudError, show } from '../errors.js';
import type { CidKind } from '../driver/cids.js';

export interface ArgSpec<T = unknown> {
  name: string;
  schema: z.ZodType<T>;
  expected: string;
  /** optional trailing argument (e.g. create_stemcell's v3 env) */
  optional?: boolean;
}

export function arg<T>(name: string, schema: z.ZodType<T>, expected: string, optional = false): ArgSpec<T> {
  return { name, schema, expected, optional };
}

export type ArgValues<A extends readonly ArgSpec[]> = { [K in keyof A]: A[K] extends ArgSpec<infer T> ? T : never };

export function parseArgs<A extends readonly ArgSpec[]>(method: string, specs: A, values: unknown[]): ArgValues<A> {
  const required = specs.filter((s) => !s.optional).length;
  if (values.length < required || values.length > specs.length) {
    const names = specs.map((s) => (s.optional ? `[${s.name}]` : s.name)).join(', ');
    const count = required === specs.length ? `${specs.length}` : `${required} to ${specs.length}`;
    throw new CloudError(`Invalid arguments for ${method}: got ${values.length} argument${values.length === 1 ? '' : 's'}, expected ${count} (${names || 'none'})`);
  }
  return specs.map((spec, i) => {
    if (spec.optional && i >= values.length) return undefined;
    const value = values[i];
    const parsed = spec.schema.safeParse(value);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0]!;
    const sub = issue.path.length ? `${spec.name}.${issue.path.join('.')}` : spec.name;
    const subValue = issue.path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined), value);
    const what = issue.path.length ? `${issue.message.replace(/^Invalid input: /, '')} (${spec.name} must be ${spec.expected})` : spec.expected;
    throw new CloudError(`Invalid argument ${i + 1} "${sub}" of ${method}: got ${subValue === undefined ? 'nothing' : show(subValue)}, expected ${what}`);
  }) as ArgValues<A>;
}

// Shared argument types.
export const cloudProperties = z.record(z.string(), z.unknown());
export const metadataObject = z.record(z.string(), z.unknown());
/** Any non-empty string that could be an identifier; whether it names a resource is the driver's business. */
export const cidString = z.string().min(1).max(256);
export const positiveMiB = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

export function cidArg(name: string, kind: CidKind) {
  return arg(name, cidString, `a ${kindName[kind]} CID (a non-empty string)`);
}
const kindName: Record<CidKind, string> = { sc: 'stemcell', vm: 'VM', disk: 'disk', snap: 'snapshot' };

/** Metadata values arrive as strings, numbers or booleans; libvirt stores strings. */
export function stringifyValues(m: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (v === null || v === undefined) continue;
    out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}

