// `info` precedes almost every CPI call, so it must cost little more than starting
// node. The full path evaluates zod and every schema; `info` needs none of that: it
// only reports the backend chosen by libvirt.uri, so it checks only what it reads
// (the URI, the top-level keys, that agent.mbus is set); the next call validates all. This fast path answers a plainly
// well-formed `info` request from a readable config; anything unusual (bad envelope,
// unreadable or invalid config, cpi-config overrides in the context) returns
// undefined and the full path answers — with the same errors it always gives.
import { readFileSync } from 'node:fs';
import { backendForUri, notImplemented, type Backend } from '../driver/backends.js';
import { API_VERSION_INFO } from './version.js';
import { CONFIG_TOP_LEVEL_KEYS } from '../config/keys.js';
import { tooDeep } from './depth.js';
import type { CpiResponse } from './response-shape.js';

/**
 * What `info` answers for a backend; the full path (src/cpi/info.ts) answers the same.
 * A backend that is not implemented is not advertised: its formats would invite a
 * director to upload stemcells no call could use.
 */
export function infoAnswer(backend: Backend, uri: string): { result: { api_version: number; stemcell_formats: string[] }; log: string } {
  if (!backend.implemented) throw notImplemented(backend, uri);
  return {
    result: { api_version: API_VERSION_INFO, stemcell_formats: backend.stemcellFormats },
    log: `info: api_version ${API_VERSION_INFO}, backend ${backend.name}`,
  };
}

export function tryFastInfo(raw: string, argv: string[], env: NodeJS.ProcessEnv): CpiResponse | undefined {
  try {
    // The full path refuses a request nested too deeply; answering it here would hide that.
    if (tooDeep(raw)) return undefined;
    const req = JSON.parse(raw) as Record<string, unknown>;
    if (!req || typeof req !== 'object' || req.method !== 'info') return undefined;
    if (!Array.isArray(req.arguments) || req.arguments.length !== 0) return undefined;
    if (req.api_version !== undefined && req.api_version !== 1 && req.api_version !== 2 && req.api_version !== 3) return undefined;
    const ctx = req.context;
    if (ctx !== undefined && (typeof ctx !== 'object' || ctx === null || Array.isArray(ctx))) return undefined;
    // cpi-config properties in the context could change the URI: let the full path merge them.
    if (ctx && Object.keys(ctx).some((k) => !['director_uuid', 'request_id', 'vm'].includes(k))) return undefined;
    const path = argv[0] ?? env.BOSH_LIBVIRT_CPI_CONFIG;
    if (!path) return undefined;
    const config = JSON.parse(readFileSync(path, 'utf8')) as { libvirt?: { uri?: unknown }; agent?: { mbus?: unknown } };
    // A config the full path would reject must be reported by it, not hidden here.
    if (typeof config?.agent?.mbus !== 'string' || config.agent.mbus === '') return undefined;
    if (Object.keys(config).some((k) => !CONFIG_TOP_LEVEL_KEYS.includes(k))) return undefined;
    // Several hosts: the full path checks that every one of them is a qemu host.
    if ('hosts' in config) return undefined;
    const uri = config.libvirt?.uri ?? 'qemu:///system';
    if (typeof uri !== 'string') return undefined;
    const { result, log } = infoAnswer(backendForUri(uri), uri);
    return { result, error: null, log };
  } catch {
    return undefined;
  }
}
