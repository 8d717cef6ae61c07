// The malformed-input battery, generated from one table: every method of the contract
// with the kinds of its positional arguments. From each row come calls with missing
// arguments, one extra argument, each argument of a wrong JSON type, and each argument
// absurd (negative/zero/10 TB sizes, 1000 networks, 100k-character strings, path
// separators, XML metacharacters, NUL bytes, unicode, CIDs of the wrong kind).
//
// Base arguments are valid and name real resources (the shared stemcell and image, a
// running VM, a detached disk), so that only the mutated argument is wrong and a CPI that
// ignored it would visibly act (the libvirt snapshot comparison catches that, and the
// suite's teardown removes whatever was made). create_disk's base size is 10 TB, larger
// than any test pool, because its vm_cid is only a hint: hostile hints must still fail
// cleanly rather than create a disk.

/** What an argument is, which decides its wrong and absurd values. */
export type ArgKind =
  | 'imagePath'
  | 'props'
  | 'stemcellEnv'
  | 'scRef'
  | 'vmRef'
  | 'diskRef'
  | 'snapRef'
  | 'agentId'
  | 'vmProps'
  | 'networks'
  | 'diskCids'
  | 'vmEnv'
  | 'tags'
  | 'snapMetadata'
  | 'size'
  | 'vmHint'
  | 'instanceSize'
  | 'networkDefinition'
  | 'networkRef';

export interface ArgShape {
  name: string;
  kind: ArgKind;
  optional?: boolean;
}

/** How a case may end besides a proper error. */
export type Outcome = 'error' | 'error-or-false' | 'error-or-null' | 'error-or-result';

export interface BatteryCase {
  method: string;
  family: 'missing' | 'extra' | 'wrong-type' | 'absurd';
  label: string;
  args: unknown[];
  outcome: Outcome;
  /** error types that count as a proper answer (default: every Bosh::Clouds type) */
  types?: readonly string[];
}

export interface Resources {
  stemcellImage: string;
  stemcell: string;
  vm: string;
  disk: string;
  network: string;
  never: { vm: string; disk: string; snap: string; sc: string };
}

export interface MethodShape {
  method: string;
  args: ArgShape[];
  base: (r: Resources) => unknown[];
}

const a = (name: string, kind: ArgKind, optional = false): ArgShape => ({ name, kind, optional });

const TEN_TB_MIB = 10 * 1024 * 1024;

/** The contract's methods and their arguments (docs-bosh cpi-api-v2-method/*; v3 adds create_stemcell's env). */
export const METHOD_SHAPES: MethodShape[] = [
  { method: 'info', args: [], base: () => [] },
  {
    method: 'create_stemcell',
    args: [a('image_path', 'imagePath'), a('cloud_properties', 'props'), a('env', 'stemcellEnv', true)],
    base: (r) => [r.stemcellImage, { name: 'battery', version: '1' }, { tags: {} }],
  },
  { method: 'delete_stemcell', args: [a('stemcell_cid', 'scRef')], base: (r) => [r.stemcell] },
  {
    method: 'create_vm',
    args: [a('agent_id', 'agentId'), a('stemcell_cid', 'scRef'), a('cloud_properties', 'vmProps'), a('networks', 'networks'), a('disk_cids', 'diskCids'), a('env', 'vmEnv')],
    base: (r) => ['agent-battery', r.stemcell, {}, { default: { type: 'dynamic', cloud_properties: { name: r.network } } }, null, {}],
  },
  { method: 'delete_vm', args: [a('vm_cid', 'vmRef')], base: (r) => [r.vm] },
  { method: 'has_vm', args: [a('vm_cid', 'vmRef')], base: (r) => [r.vm] },
  { method: 'reboot_vm', args: [a('vm_cid', 'vmRef')], base: (r) => [r.vm] },
  { method: 'set_vm_metadata', args: [a('vm_cid', 'vmRef'), a('metadata', 'tags')], base: (r) => [r.vm, { deployment: 'battery' }] },
  {
    method: 'calculate_vm_cloud_properties',
    args: [a('desired_instance_size', 'instanceSize')],
    base: () => [{ cpu: 1, ram: 256, ephemeral_disk_size: 64 }],
  },
  { method: 'create_disk', args: [a('size', 'size'), a('cloud_properties', 'props'), a('vm_cid', 'vmHint')], base: (r) => [TEN_TB_MIB, {}, r.vm] },
  { method: 'delete_disk', args: [a('disk_cid', 'diskRef')], base: (r) => [r.disk] },
  { method: 'resize_disk', args: [a('disk_cid', 'diskRef'), a('new_size', 'size')], base: (r) => [r.disk, TEN_TB_MIB] },
  { method: 'update_disk', args: [a('disk_cid', 'diskRef'), a('new_size', 'size'), a('cloud_properties', 'props')], base: (r) => [r.disk, TEN_TB_MIB, {}] },
  { method: 'has_disk', args: [a('disk_cid', 'diskRef')], base: (r) => [r.disk] },
  { method: 'attach_disk', args: [a('vm_cid', 'vmRef'), a('disk_cid', 'diskRef')], base: (r) => [r.vm, r.disk] },
  { method: 'detach_disk', args: [a('vm_cid', 'vmRef'), a('disk_cid', 'diskRef')], base: (r) => [r.vm, r.disk] },
  { method: 'set_disk_metadata', args: [a('disk_cid', 'diskRef'), a('metadata', 'tags')], base: (r) => [r.disk, { deployment: 'battery' }] },
  { method: 'get_disks', args: [a('vm_cid', 'vmRef')], base: (r) => [r.vm] },
  { method: 'snapshot_disk', args: [a('disk_cid', 'diskRef'), a('metadata', 'snapMetadata')], base: (r) => [r.disk, {}] },
  { method: 'delete_snapshot', args: [a('snapshot_cid', 'snapRef')], base: (r) => [r.never.snap] },
  { method: 'create_network', args: [a('network_definition', 'networkDefinition'), a('cloud_properties', 'props', true)], base: () => [{ type: 'manual', subnets: [] }, {}] },
  { method: 'delete_network', args: [a('network_cid', 'networkRef')], base: () => ['net-battery'] },
];

const LONG = 'x'.repeat(100_000);
const HOSTILE_STRINGS: Array<[string, string]> = [
  ['empty string', ''],
  ['100k characters', LONG],
  ['path traversal', '../../etc/passwd'],
  ['XML metacharacters', `<x>&'"`],
  ['NUL byte', 'a\u0000b'],
  ['unicode', 'ünïcødé-💥-\u202e-名前'],
];

/** Values of the wrong JSON type for an argument of `kind`. */
function wrongTypes(kind: ArgKind): Array<[string, unknown]> {
  const nullable = kind === 'stemcellEnv' || kind === 'diskCids' || kind === 'vmEnv' || kind === 'snapMetadata' || kind === 'vmHint';
  const objectLike = ['props', 'stemcellEnv', 'vmProps', 'networks', 'vmEnv', 'tags', 'snapMetadata', 'instanceSize', 'networkDefinition'].includes(kind);
  const all: Array<[string, unknown]> = [
    ['number', 42],
    ['boolean', true],
    ['string', 'a-string'],
    ['array', ['a']],
    ['object', { a: 1 }],
    ['null', null],
  ];
  return all.filter(([label]) => {
    if (label === 'null') return !nullable;
    if (kind === 'size') return label !== 'number';
    if (kind === 'diskCids') return label !== 'array';
    if (objectLike) return label !== 'object';
    return label !== 'string'; // string kinds
  });
}

/** Absurd values for an argument of `kind`, each with how the call may end. */
function absurd(method: string, kind: ArgKind, r: Resources): Array<[string, unknown, Outcome]> {
  const refOutcome: Outcome =
    method === 'has_vm' || method === 'has_disk'
      ? 'error-or-false'
      : method === 'delete_snapshot' || method === 'delete_stemcell'
        ? 'error-or-null' // a missing snapshot/stemcell is already deleted
        : 'error';
  const refs = (never: string, otherKind: string): Array<[string, unknown, Outcome]> => [
    ...HOSTILE_STRINGS.map(([l, v]): [string, unknown, Outcome] => [l, v, refOutcome]),
    ['a CID that never existed', never, refOutcome],
    ['an existing CID of another kind', otherKind, refOutcome],
  ];
  switch (kind) {
    case 'scRef':
      return refs(r.never.sc, r.disk);
    case 'vmRef':
      return refs(r.never.vm, r.disk);
    case 'diskRef':
      return refs(r.never.disk, r.vm);
    case 'snapRef':
      return refs(r.never.snap, r.disk);
    case 'imagePath':
      return [
        ...HOSTILE_STRINGS.map(([l, v]): [string, unknown, Outcome] => [l, v, 'error']),
        ['a directory', '/', 'error'],
        ['a device', '/dev/zero', 'error'],
        ['a file that is no tarball', '/etc/hostname', 'error'],
      ];
    case 'agentId':
      // Other odd agent ids are legal (the director makes uuids); only impossible ones here.
      return [
        ['empty string', '', 'error'],
        ['100k characters', LONG, 'error'],
      ];
    case 'size':
      return [
        ['negative', -1, 'error'],
        ['zero', 0, 'error'],
        ['fractional', 1.5, 'error'],
        ['1e308', 1e308, 'error'],
        ...(method === 'create_disk' ? [] : ([['10 TB', TEN_TB_MIB, 'error']] as Array<[string, unknown, Outcome]>)),
        ...(method === 'resize_disk' ? ([['shrinking to 1 MiB', 1, 'error']] as Array<[string, unknown, Outcome]>) : []),
      ];
    case 'vmHint':
      // The hint names no resource that must exist: pair hostile hints with the 10 TB base
      // size (nothing can be created) and require a proper error, not a crash.
      return HOSTILE_STRINGS.map(([l, v]): [string, unknown, Outcome] => [l, v, 'error']);
    case 'vmProps':
      return [
        ['cpu negative', { cpu: -1 }, 'error'],
        ['cpu zero', { cpu: 0 }, 'error'],
        ['cpu 1e9', { cpu: 1e9 }, 'error'],
        ['ram 1 MiB', { ram: 1 }, 'error'],
        ['ram as string', { ram: '1024' }, 'error'],
        ['ephemeral_disk negative', { ephemeral_disk: { size: -1 } }, 'error'],
        ['machine with XML metacharacters', { machine: `<x>&'"` }, 'error'],
        ['firmware path traversal', { firmware: '../../etc/passwd' }, 'error'],
      ];
    case 'networks': {
      const net = (settings: Record<string, unknown>) => ({ n: { type: 'dynamic', cloud_properties: { name: r.network }, ...settings } });
      const thousand = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`n${i}`, { type: 'dynamic', cloud_properties: { name: r.network } }]));
      return [
        ['no networks', {}, 'error'],
        ['only a vip network', { v: { type: 'vip', ip: '198.18.99.9' } }, 'error'],
        ['1000 networks', thousand, 'error'],
        ['network name of 100k characters', { [LONG]: { type: 'dynamic', cloud_properties: { name: r.network } } }, 'error'],
        ['settings not an object', { n: 'dynamic' }, 'error'],
        ['unknown type', net({ type: 'bogus' }), 'error'],
        ['manual without ip', net({ type: 'manual', netmask: '255.255.255.0' }), 'error'],
        ['ip with path traversal', net({ type: 'manual', ip: '../../etc/passwd', netmask: '255.255.255.0' }), 'error'],
        ['ip of 100k characters', net({ type: 'manual', ip: LONG, netmask: '255.255.255.0' }), 'error'],
        ['mac with XML metacharacters', net({ mac: `<x>&'"` }), 'error'],
        ['libvirt network with path traversal', net({ cloud_properties: { name: '../../etc/passwd' } }), 'error'],
        ['libvirt network with XML metacharacters', net({ cloud_properties: { name: `<x>&'"` } }), 'error'],
        ['libvirt network with a NUL byte', net({ cloud_properties: { name: 'a\u0000b' } }), 'error'],
        ['libvirt network in unicode', net({ cloud_properties: { name: 'ünïcødé-💥' } }), 'error'],
        ['NIC model with XML metacharacters', net({ cloud_properties: { name: r.network, model: `<x>&'"` } }), 'error'],
      ];
    }
    case 'diskCids':
      return [
        ['1000 disk CIDs', Array.from({ length: 1000 }, () => r.never.disk), 'error'],
        ['a CID of 100k characters', [LONG], 'error'],
        ['an empty CID', [''], 'error'],
        ['a number inside', [42], 'error'],
      ];
    case 'tags':
      // Legal but hostile tag values must be stored or refused cleanly.
      return [
        ['values with XML metacharacters', { deployment: `<x>&'"`, name: ']]><!--' }, 'error-or-null'],
        ['values with NUL bytes', { deployment: 'a\u0000b' }, 'error-or-null'],
        ['unicode keys and values', { 'ünï💥': '名前\u202e' }, 'error-or-null'],
        ['a value of 100k characters', { deployment: LONG }, 'error-or-null'],
        ['a key with XML metacharacters', { [`<x>&'"`]: 'v' }, 'error-or-null'],
      ];
    case 'instanceSize':
      return [
        ['cpu negative', { cpu: -1, ram: 256, ephemeral_disk_size: 64 }, 'error'],
        ['cpu zero', { cpu: 0, ram: 256, ephemeral_disk_size: 64 }, 'error'],
        ['ram zero', { cpu: 1, ram: 0, ephemeral_disk_size: 64 }, 'error'],
        ['ram negative', { cpu: 1, ram: -256, ephemeral_disk_size: 64 }, 'error'],
        ['ephemeral negative', { cpu: 1, ram: 256, ephemeral_disk_size: -1 }, 'error'],
        ['fractional cpu', { cpu: 1.5, ram: 256, ephemeral_disk_size: 64 }, 'error'],
        ['1e308 ram', { cpu: 1, ram: 1e308, ephemeral_disk_size: 64 }, 'error'],
        ['missing ram', { cpu: 1, ephemeral_disk_size: 64 }, 'error'],
        ['strings', { cpu: '1', ram: '256', ephemeral_disk_size: '64' }, 'error'],
        // A pure calculation may answer for a huge but finite size; it must not crash.
        ['10 TB ephemeral disk', { cpu: 1, ram: 256, ephemeral_disk_size: TEN_TB_MIB }, 'error-or-result'],
      ];
    case 'networkDefinition':
    case 'networkRef':
      return HOSTILE_STRINGS.map(([l, v]): [string, unknown, Outcome] => [l, v, 'error']);
    case 'props':
    case 'stemcellEnv':
    case 'vmEnv':
    case 'snapMetadata':
      // Free-form objects: only their type can be wrong.
      return [];
  }
}

/** Error types that answer a malformed call (count, type): the caller's mistake, not a lookup. */
const SHAPE_ERRORS = ['Bosh::Clouds::CloudError', 'Bosh::Clouds::CpiError'] as const;
const UNIMPLEMENTED = new Set(['create_network', 'delete_network']);

export function batteryCases(r: Resources): BatteryCase[] {
  const cases: BatteryCase[] = [];
  for (const shape of METHOD_SHAPES) {
    const { method, args } = shape;
    const base = shape.base(r);
    const shapeTypes = UNIMPLEMENTED.has(method) ? [...SHAPE_ERRORS, 'Bosh::Clouds::NotImplemented'] : SHAPE_ERRORS;
    const required = args.filter((x) => !x.optional).length;
    for (let n = 0; n < required; n++) {
      cases.push({ method, family: 'missing', label: `${n} of ${required} required arguments`, args: base.slice(0, n), outcome: 'error', types: shapeTypes });
    }
    cases.push({ method, family: 'extra', label: `${args.length + 1} arguments (one extra)`, args: [...base, 'extra'], outcome: 'error', types: shapeTypes });
    if (method === 'info') cases.push({ method, family: 'extra', label: 'arguments of another method', args: ['a', {}, null], outcome: 'error', types: shapeTypes });
    args.forEach((spec, i) => {
      for (const [label, value] of wrongTypes(spec.kind)) {
        const mutated = [...base];
        mutated[i] = value;
        cases.push({ method, family: 'wrong-type', label: `${spec.name} is ${label === 'array' || label === 'object' ? 'an' : 'a'} ${label}`, args: mutated, outcome: 'error', types: shapeTypes });
      }
      for (const [label, value, outcome] of absurd(method, spec.kind, r)) {
        const mutated = [...base];
        mutated[i] = value;
        cases.push({ method, family: 'absurd', label: `${spec.name}: ${label}`, args: mutated, outcome });
      }
    });
  }
  return cases;
}

/** Whole requests that are broken before any method runs. */
export function envelopeCases(): Array<{ label: string; raw: string; types: readonly string[] }> {
  const cpiErr = ['Bosh::Clouds::CpiError'] as const;
  const notImpl = ['Bosh::Clouds::NotImplemented', 'Bosh::Clouds::CpiError'] as const;
  const req = (o: Record<string, unknown>) => JSON.stringify({ arguments: [], context: { director_uuid: 'conformance' }, api_version: 2, ...o });
  return [
    { label: 'empty stdin', raw: '', types: cpiErr },
    { label: 'not JSON', raw: '{"method": "info", ', types: cpiErr },
    { label: 'a JSON array', raw: '[]', types: cpiErr },
    { label: 'a JSON string', raw: '"info"', types: cpiErr },
    { label: 'no method', raw: req({}), types: cpiErr },
    { label: 'method is a number', raw: req({ method: 42 }), types: cpiErr },
    { label: 'arguments is an object', raw: req({ method: 'info', arguments: {} }), types: cpiErr },
    { label: 'no arguments', raw: JSON.stringify({ method: 'info', context: {} }), types: cpiErr },
    { label: 'context is a string', raw: req({ method: 'info', context: 'x' }), types: cpiErr },
    { label: 'api_version 99', raw: req({ method: 'info', api_version: 99 }), types: cpiErr },
    { label: 'unknown method', raw: req({ method: 'format_host' }), types: notImpl },
    { label: 'method with path traversal', raw: req({ method: '../../etc/passwd' }), types: notImpl },
    { label: 'method with XML metacharacters', raw: req({ method: `<x>&'"` }), types: notImpl },
    { label: 'method with a NUL byte', raw: req({ method: 'info\u0000' }), types: notImpl },
    { label: 'method of 100k characters', raw: req({ method: LONG }), types: notImpl },
    { label: 'method in unicode', raw: req({ method: 'ïnfø💥' }), types: notImpl },
    { label: 'two requests', raw: `${req({ method: 'info' })}\n${req({ method: 'info' })}`, types: cpiErr },
  ];
}
