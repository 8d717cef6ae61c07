// The fence's XML (rendered and parsed in src/xml/fence.ts) and how a fence is told apart
// (src/driver/shared/fence.ts); that libvirt accepts it and refuses the late define is
// shown against the real daemons in test/integration/crash-define.test.ts.
import { describe, expect, it } from 'vitest';
import { fenceDomainType, mayBeFence, vmUuid } from '../../src/driver/shared/fence.js';
import { parseDomain, parseFence, parseVmMetadata, renderFenceDomain, XmlRenderError } from '../../src/xml/index.js';

const uuid = 'fe0cefe0-1111-4222-8333-444455556666';
const info = { of: 't-x-vm-00000000-0000-4000-8000-000000000001', reason: `define got no answer: <lost> & "late" 'x' &amp; &#65;`, host: 'h', pid: 42, start: 'b/1', at: '2026-01-01T00:00:00.000Z' };

describe('fence XML', () => {
  it('carries the record, read back exactly, and is no VM metadata', () => {
    const xml = renderFenceDomain({ type: 'qemu', uuid, record: info });
    expect(parseFence(xml)).toEqual(info);
    expect(xml).not.toMatch(/<disk|<interface/);
    expect(() => parseVmMetadata(xml)).toThrow();
  });

  it('is the domain libvirt has always been given', () => {
    const d = parseDomain(renderFenceDomain({ type: 'qemu', uuid, record: info }));
    expect(d).toMatchObject({ name: info.of, uuid });
    expect(renderFenceDomain({ type: 'qemu', uuid, record: info })).toEqual(
      [
        `<domain type="qemu">`,
        `  <name>${info.of}</name>`,
        `  <uuid>${uuid}</uuid>`,
        `  <title>fence of ${info.of} (bosh-libvirt-cpi): not a VM</title>`,
        `  <memory unit="MiB">16</memory>`,
        `  <vcpu>1</vcpu>`,
        `  <os>`,
        `    <type arch="x86_64">hvm</type>`,
        `  </os>`,
        `  <metadata>`,
        `    <fence xmlns="urn:bosh-libvirt-cpi:fence:1" of="${info.of}" reason="define got no answer: &lt;lost&gt; &amp; &quot;late&quot; 'x' &amp;amp; &amp;#65;" host="h" pid="42" start="b/1" at="2026-01-01T00:00:00.000Z"/>`,
        `  </metadata>`,
        `</domain>`,
        ``,
      ].join('\n'),
    );
  });

  it('reads fences as the earlier string-built code wrote them and as libvirt hands them back', () => {
    const rec = { of: 't-x', reason: `a <b> & "c" 'd'`, host: 'h', pid: 7, start: '', at: '2026' };
    // What the string-built fenceXml wrote (single-quoted domain attributes, &apos;).
    const old = `<domain type='test'><name>t-x</name><uuid>${uuid}</uuid><title>fence of t-x (bosh-libvirt-cpi): not a VM</title><memory unit='MiB'>16</memory><vcpu>1</vcpu><os><type>hvm</type></os><metadata><fence xmlns="urn:bosh-libvirt-cpi:fence:1" of="t-x" reason="a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;" host="h" pid="7" start="" at="2026"/></metadata></domain>`;
    expect(parseFence(old)).toEqual(rec);
    // `virsh dumpxml` of that fence (libvirt 10, test driver): default namespace kept, ' unescaped.
    const dumped = `<domain type='test'>\n  <name>t-x</name>\n  <uuid>${uuid}</uuid>\n  <title>fence of t-x (bosh-libvirt-cpi): not a VM</title>\n  <metadata>\n    <fence xmlns="urn:bosh-libvirt-cpi:fence:1" of="t-x" reason="a &lt;b&gt; &amp; &quot;c&quot; 'd'" host="h" pid="7" start="" at="2026"/>\n  </metadata>\n  <memory unit='KiB'>16384</memory>\n</domain>\n`;
    expect(parseFence(dumped)).toEqual(rec);
    // Re-serialised with a namespace prefix (as DOMAIN_SET_METADATA stores it), attributes reordered and single-quoted.
    const prefixed = `<domain type='qemu'><name>t-x</name><metadata><fence:fence xmlns:fence='urn:bosh-libvirt-cpi:fence:1' at='2026' pid='7' start='' host='h' reason='a &lt;b&gt; &amp; "c" &apos;d&apos;' of='t-x'/></metadata></domain>`;
    expect(parseFence(prefixed)).toEqual(rec);
  });

  it('a domain without the fence element is none', () => {
    expect(parseFence("<domain type='qemu'><name>x</name><metadata><fence xmlns='urn:other'/></metadata></domain>")).toBeUndefined();
    expect(parseFence("<domain type='qemu'><name>x</name><metadata><x:fence xmlns:x='urn:other' of='x'/></metadata></domain>")).toBeUndefined();
    expect(parseFence("<domain type='qemu'><name>x</name><description>&lt;fence xmlns=\"urn:bosh-libvirt-cpi:fence:1\"/&gt;</description></domain>")).toBeUndefined();
    expect(parseFence("<domain type='qemu'><name>x</name></domain>")).toBeUndefined();
  });

  it('words an attribute cannot carry become spaces; a bad uuid or name is refused by field', () => {
    const rec = { ...info, reason: 'line one\nline\ttwo\r\u0007end' };
    expect(parseFence(renderFenceDomain({ type: 'qemu', uuid, record: rec }))?.reason).toBe('line one line two  end');
    expect(() => renderFenceDomain({ type: 'qemu', uuid: 'nope', record: info })).toThrow(XmlRenderError);
    expect(() => renderFenceDomain({ type: 'qemu', uuid, record: { ...info, of: 'a/b' } })).toThrow(/fence name/);
  });

  it('the os element suits each driver', () => {
    const os = (uri: string) => parseFenceOs(renderFenceDomain({ type: fenceDomainType(uri), uuid, record: info }));
    expect(os('lxc:///')).toBe('<domain type="lxc"> <os> <type>exe</type> <init>/sbin/init</init> </os>');
    expect(os('test+unix:///default')).toBe('<domain type="test"> <os> <type>hvm</type> </os>');
    expect(os('qemu+ssh://h/system')).toBe('<domain type="qemu"> <os> <type arch="x86_64">hvm</type> </os>');
  });

  it("a VM's uuid never looks like a fence's", () => {
    for (let i = 0; i < 2000; i++) {
      const u = vmUuid();
      expect(mayBeFence({ name: 'x', id: -1, uuid: Buffer.from(u.replace(/-/g, ''), 'hex') })).toBe(false);
    }
    expect(mayBeFence({ name: 'x', id: -1, uuid: Buffer.from('fe0cefe0111142228333444455556666', 'hex') })).toBe(true);
  });
});

/** The root tag and the <os> element, whitespace squeezed. */
function parseFenceOs(xml: string): string {
  const root = xml.slice(0, xml.indexOf('>') + 1);
  const os = xml.slice(xml.indexOf('<os>'), xml.indexOf('</os>') + 5);
  return `${root} ${os}`.replace(/\s+/g, ' ');
}
