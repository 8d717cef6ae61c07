// Golden files for the XML renderers, each also validated against libvirt's own RNG
// schemas with virt-xml-validate.
//
// Updating goldens after an intended change of output:
//   UPDATE_GOLDEN=1 npx vitest run test/unit/xml-golden.test.ts
// then review `git diff fixtures/xml/` like any other code change and commit it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { create } from 'xmlbuilder2';
import * as specs from '../../fixtures/xml/specs.js';
import {
  renderBackup,
  renderDhcpHost,
  renderDirPool,
  renderDiskDevice,
  renderDomain,
  renderInterfaceDevice,
  renderNetwork,
  renderVmMetadata,
  renderVolume,
} from '../../src/xml/index.js';
import { scratchDir } from '../helpers/scratch.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/xml');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const work = scratchDir('xml-golden-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Schema = 'domain' | 'storagevol' | 'storagepool' | 'network' | 'domainbackup';

/** Runs libvirt's validator; its stderr names the offending element when it fails. */
function validate(xml: string, schema: Schema, label: string): void {
  const file = join(work, `${label}.xml`);
  writeFileSync(file, xml);
  try {
    execFileSync('virt-xml-validate', [file, schema], { stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`virt-xml-validate ${schema} rejected ${label}:\n${err.stderr?.toString() ?? ''}${err.stdout?.toString() ?? ''}\n${xml}`);
  }
}

// Device and <host> snippets have no schema of their own: embed them in the smallest
// document that has one, under the element libvirt would put them in.
type Builder = ReturnType<typeof create>;
function wrapped(outer: string, parent: (el: Builder) => boolean, fragment: string, container?: string): string {
  const doc = create(outer);
  const at = doc.root().find(parent, true, true);
  if (!at) throw new Error('wrapper has no element to hold the fragment');
  (container ? at.ele(container) : at).import(create(fragment));
  return doc.end({ headless: true, prettyPrint: true });
}
const named = (name: string) => (el: Builder) => el.node.nodeName === name;
const dhcpOf = (family: string) => (el: Builder) =>
  el.node.nodeName === 'dhcp' && (el.up().node as unknown as { getAttribute(n: string): string | null }).getAttribute('family') === family;

const MINIMAL_DOMAIN = renderDomain({ ...specs.qemuDomain, name: 't-xml-wrapper', disks: [], interfaces: [], metadata: undefined });
const MINIMAL_NETWORK = renderNetwork({
  name: 't-xml-wrapper',
  bridge: 't-xml-br9',
  ips: [
    { family: 'ipv4', address: '198.18.49.1', prefix: 24, dhcp: { ranges: [] } },
    { family: 'ipv6', address: 'fd00:49::1', prefix: 64, dhcp: { ranges: [] } },
  ],
});

interface Golden {
  file: string;
  render: () => string;
  schema: Schema;
  /** where the snippet goes inside a wrapper document, for snippets only */
  wrapIn?: { outer: string; parent: (el: Builder) => boolean; container?: string };
}

const goldens: Golden[] = [
  { file: 'domain-qemu.xml', render: () => renderDomain(specs.qemuDomain), schema: 'domain' },
  { file: 'domain-q35-efi.xml', render: () => renderDomain(specs.q35EfiDomain), schema: 'domain' },
  { file: 'domain-kvm.xml', render: () => renderDomain(specs.kvmDomain), schema: 'domain' },
  { file: 'domain-lxc.xml', render: () => renderDomain(specs.lxcDomain), schema: 'domain' },
  { file: 'volume-overlay.xml', render: () => renderVolume(specs.overlayVolume), schema: 'storagevol' },
  { file: 'volume-base.xml', render: () => renderVolume(specs.baseVolume), schema: 'storagevol' },
  { file: 'volume-raw.xml', render: () => renderVolume(specs.rawVolume), schema: 'storagevol' },
  { file: 'volume-dir.xml', render: () => renderVolume(specs.dirVolume), schema: 'storagevol' },
  { file: 'pool-dir.xml', render: () => renderDirPool(specs.dirPool), schema: 'storagepool' },
  { file: 'backup-push.xml', render: () => renderBackup(specs.backup), schema: 'domainbackup' },
  { file: 'network-dual-stack.xml', render: () => renderNetwork(specs.dualStackNetwork), schema: 'network' },
  { file: 'network-quiet.xml', render: () => renderNetwork(specs.quietNetwork), schema: 'network' },
  {
    file: 'metadata-vm.xml',
    render: () => renderVmMetadata(specs.metadata),
    schema: 'domain',
    wrapIn: { outer: MINIMAL_DOMAIN, parent: named('domain'), container: 'metadata' },
  },
  {
    file: 'device-disk-cdrom.xml',
    render: () => renderDiskDevice(specs.qemuDomain.disks[2]!),
    schema: 'domain',
    wrapIn: { outer: MINIMAL_DOMAIN, parent: named('devices') },
  },
  {
    file: 'device-disk-virtio.xml',
    render: () => renderDiskDevice(specs.qemuDomain.disks[0]!),
    schema: 'domain',
    wrapIn: { outer: MINIMAL_DOMAIN, parent: named('devices') },
  },
  {
    file: 'device-interface-network.xml',
    render: () => renderInterfaceDevice(specs.qemuDomain.interfaces[0]!),
    schema: 'domain',
    wrapIn: { outer: MINIMAL_DOMAIN, parent: named('devices') },
  },
  ...Object.entries(specs.dhcpHosts).map(([name, host]): Golden => ({
    file: `${name}.xml`,
    render: () => renderDhcpHost(host),
    schema: 'network',
    wrapIn: { outer: MINIMAL_NETWORK, parent: dhcpOf(host.family) },
  })),
];

describe('golden XML', () => {
  for (const g of goldens) {
    it(`${g.file} matches its golden and libvirt's schema`, () => {
      const xml = g.render();
      const path = join(FIXTURES, g.file);
      if (UPDATE) writeFileSync(path, xml);
      if (!existsSync(path)) throw new Error(`no golden ${g.file}: run with UPDATE_GOLDEN=1 and review it`);
      expect(xml).toBe(readFileSync(path, 'utf8'));
      const doc = g.wrapIn ? wrapped(g.wrapIn.outer, g.wrapIn.parent, xml, g.wrapIn.container) : xml;
      validate(doc, g.schema, g.file.replace(/\.xml$/, ''));
    });
  }
});
