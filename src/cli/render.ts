// `render vm <request.json>`: the domain XML create_vm would define, computed offline.
// It runs create_vm's own decisions (argument schemas, cloud_properties decoding,
// network planning, the backend's domain) with placeholders where create_vm would ask
// libvirt: volume paths, the VM CID, DHCP reservations and on-link prefix checks.
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { loadConfig, isPlainObject } from '../config/load.js';
import { parseArgs } from '../cpi/args.js';
import { createVM as createVmMethod } from '../cpi/vms.js';
import { decodeVmCloudProperties } from '../driver/shared/cloud-properties.js';
import { planVmNetworks } from '../driver/shared/vms.js';
import { backendForUri } from '../driver/backends.js';
import { loadProfile } from '../driver/profiles.js';
import { renderDomain, type DomainSpec, type LxcDomainSpec, type VboxVmDomain } from '../xml/index.js';
import { CliError } from './common.js';

/** A VM CID that cannot collide with a real one (uuid all zeros). */
export const PLACEHOLDER_UUID = '00000000-0000-0000-0000-000000000000';

export interface RenderedVm {
  spec: DomainSpec | LxcDomainSpec | VboxVmDomain;
  xml: string;
  /** what differs from a real create_vm, for the operator */
  notes: string[];
}

/** The request file: a whole CPI request, or just create_vm's arguments array. */
export function readCreateVmRequest(file: string): { args: unknown[]; context: Record<string, unknown> } {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CliError(`Cannot read ${file} as JSON: ${(e as Error).message}`);
  }
  if (Array.isArray(doc)) return { args: doc, context: {} };
  if (isPlainObject(doc)) {
    if (doc.method !== undefined && doc.method !== 'create_vm') throw new CliError(`${file} is a ${JSON.stringify(doc.method)} request; render vm needs a create_vm request`);
    if (!Array.isArray(doc.arguments)) throw new CliError(`${file} has no "arguments" array; expected {"method":"create_vm","arguments":[...]} or the arguments array itself`);
    return { args: doc.arguments, context: isPlainObject(doc.context) ? doc.context : {} };
  }
  throw new CliError(`${file} must hold a create_vm request object or its arguments array`);
}

export async function renderVm(configPath: string, file: string, opts: { vmCid?: string | undefined; domainType?: 'kvm' | 'qemu' | undefined }): Promise<RenderedVm> {
  const { args, context } = readCreateVmRequest(file);
  // The director's cpi-config properties in the context override cpi.json, as in bin/cpi.
  const config: Config = loadConfig(configPath, context);
  const [agentId, stemcellCid, props, networks] = parseArgs('create_vm', createVmMethod.args, args) as [string, string, Record<string, unknown>, Record<string, unknown>, unknown, unknown];
  const shape = decodeVmCloudProperties(props, config);
  const plan = planVmNetworks(networks, config);

  const vmStemcell = isPlainObject(context.vm) && isPlainObject(context.vm.stemcell) ? context.vm.stemcell : {};
  const stemcellApiVersion = typeof vmStemcell.api_version === 'number' ? vmStemcell.api_version : undefined;
  const vm = opts.vmCid ?? `${config.name_prefix}vm-${PLACEHOLDER_UUID}`;
  const profile = await loadProfile(backendForUri(config.libvirt.uri), config.libvirt.uri);
  const { spec, notes } = profile.vms.preview({
    config,
    vm,
    agentId,
    stemcellCid,
    ...(stemcellApiVersion !== undefined ? { stemcellApiVersion } : {}),
    shape,
    plan,
    ...(opts.domainType ? { domainType: opts.domainType } : {}),
  });
  return { spec, xml: renderDomain(spec), notes };
}
