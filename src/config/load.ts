// Loads cpi.json and merges the director's cpi-config properties (sent in the request
// context) over it, then validates the result against ConfigSchema. Errors name the
// file, the key and the problem.
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { CloudError, show } from '../errors.js';
import { ConfigSchema, type Config } from './schema.js';

export const CONFIG_ENV = 'BOSH_LIBVIRT_CPI_CONFIG';

// Context keys that belong to the director, not to cpi-config properties.
const DIRECTOR_CONTEXT_KEYS = new Set(['director_uuid', 'request_id', 'vm']);

export function resolveConfigPath(argv: string[], env: NodeJS.ProcessEnv): string {
  const path = argv[0] ?? env[CONFIG_ENV];
  if (!path) {
    throw new CloudError(`No configuration file: pass the path of cpi.json as the first argument or set ${CONFIG_ENV}`);
  }
  return path;
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new CloudError(`Cannot read configuration file ${path}: ${code}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CloudError(`Configuration file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The configuration in force for one request: the file's values, overridden by the
 * cpi-config properties the director merges into `context` (only keys the schema
 * knows; `context.vm` is the director's VM/stemcell info and is ignored here).
 */
export function loadConfig(path: string, context: Record<string, unknown> = {}): Config {
  const fromFile = readConfigFile(path);
  if (!isPlainObject(fromFile)) {
    throw new CloudError(`Configuration file ${path} must hold a JSON object, got ${show(fromFile)}`);
  }
  const overrides: Record<string, unknown> = {};
  const known = Object.keys(ConfigSchema.shape);
  for (const [k, v] of Object.entries(context)) {
    if (!DIRECTOR_CONTEXT_KEYS.has(k) && known.includes(k)) overrides[k] = v;
  }
  const merged = deepMerge(fromFile, overrides);
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const source = Object.keys(overrides).length > 0 ? `${path} (with cpi-config properties from the request context)` : path;
    throw new CloudError(`Invalid configuration in ${source}: ${describeIssues(parsed.error.issues, merged)}`);
  }
  return parsed.data;
}

/** One line per problem: `key storage.pool: expected string, got 3`. */
export function describeIssues(issues: z.core.$ZodIssue[], input: unknown): string {
  return issues
    .slice(0, 5)
    .map((i) => {
      const key = i.path.length ? i.path.join('.') : '(top level)';
      if (i.code === 'unrecognized_keys') return `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => [...i.path, k].join('.')).join(', ')}`;
      const value = valueAt(input, i.path);
      const got = value === undefined ? 'nothing' : show(value);
      return `key ${key}: ${i.message.replace(/^Invalid input: /, '')}, got ${got}`;
    })
    .join('; ');
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = input;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}
