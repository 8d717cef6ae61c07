import { describe, expect, it } from 'vitest';
import { candidateHosts, place, type HostState } from '../../src/hosts/placement.js';

const host = (name: string, over: Partial<HostState> = {}): HostState => ({
  name, down: null, totalMemoryMiB: 8192, freeMemoryMiB: 8192, placedMemoryMiB: 0, placedVms: 0, ...over,
});

describe('placement', () => {
  it('picks the host with the most memory to spare and says why for every host', () => {
    const p = place([host('a', { freeMemoryMiB: 2048 }), host('b', { freeMemoryMiB: 6000 }), host('c', { freeMemoryMiB: 4000 })], { memoryMiB: 1024 });
    expect(p.host).toBe('b');
    expect(p.verdicts.map((v) => [v.host, v.chosen])).toEqual([['a', false], ['b', true], ['c', false]]);
    expect(p.verdicts[1]!.reason).toMatch(/^chosen: most room \(6000 MiB/);
    expect(p.verdicts[0]!.reason).toMatch(/^not chosen: less room than b/);
  });

  it('counts what the CPI already placed, so equal hosts fill evenly although fresh VMs use little memory yet', () => {
    // b looks a little fuller than a: by free memory alone a would take every VM
    let hosts = [host('a'), host('b', { freeMemoryMiB: 8100 })];
    const landed: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = place(hosts, { memoryMiB: 1024 });
      landed.push(p.host!);
      // a just-booted guest barely touches its memory: free memory hardly moves
      hosts = hosts.map((h) => (h.name === p.host ? { ...h, freeMemoryMiB: h.freeMemoryMiB - 10, placedMemoryMiB: h.placedMemoryMiB + 1024, placedVms: h.placedVms + 1 } : h));
    }
    expect(landed.filter((n) => n === 'a')).toHaveLength(3);
    expect(landed.filter((n) => n === 'b')).toHaveLength(3);
  });

  it('skips hosts that are not candidates, unreachable or too full, with the reason', () => {
    const p = place([
      host('a'),
      host('b', { down: 'connection refused' }),
      host('c', { placedMemoryMiB: 7800 }),
      host('d', { freeMemoryMiB: 3000 }),
      host('e', { poolFreeBytes: 10 }),
    ], { memoryMiB: 1024, diskBytes: 1 << 30, candidates: ['b', 'c', 'd', 'e'] });
    expect(p.host).toBe('d');
    const why = Object.fromEntries(p.verdicts.map((v) => [v.host, v.reason]));
    expect(why.a).toMatch(/not among the candidates b, c, d, e/);
    expect(why.b).toMatch(/unreachable \(connection refused\)/);
    expect(why.c).toMatch(/needs 1024 MiB of memory, has 392 MiB.*7800 MiB placed by the CPI/);
    expect(why.e).toMatch(/needs 1073741824 bytes in its pool, has 10/);
  });

  it('no host left: retryable only when a candidate could not be asked', () => {
    expect(place([host('a', { down: 'timeout' }), host('b', { freeMemoryMiB: 10 })], { memoryMiB: 512 })).toMatchObject({ host: null, retryable: true });
    expect(place([host('a', { freeMemoryMiB: 10 })], { memoryMiB: 512 })).toMatchObject({ host: null, retryable: false });
  });

  it('places next to what the new object goes with when that host fits, else by room', () => {
    expect(place([host('a'), host('b', { freeMemoryMiB: 2048 })], { memoryMiB: 1024, near: 'b' }).host).toBe('b');
    const p = place([host('a'), host('b', { down: 'refused' })], { memoryMiB: 1024, near: 'b' });
    expect(p.host).toBe('a');
    expect(p.verdicts[1]!.reason).toMatch(/unreachable.*will move when attached/);
  });

  it('ties go to fewer CPI VMs, then to the name', () => {
    expect(place([host('b'), host('a')], { memoryMiB: 1 }).host).toBe('a');
    expect(place([host('a', { placedVms: 2, totalMemoryMiB: 9999 }), host('b', { placedVms: 1, totalMemoryMiB: 9999 })], { memoryMiB: 1 }).host).toBe('b');
  });
});

describe('candidate hosts from cloud_properties', () => {
  const known = ['host-a', 'host-b'];
  it('host pins one, hosts lists several, neither means all', () => {
    expect(candidateHosts({ host: 'host-b' }, known)).toEqual(['host-b']);
    expect(candidateHosts({ hosts: ['host-a', 'host-b'] }, known)).toEqual(['host-a', 'host-b']);
    expect(candidateHosts({ cpu: 2 }, known)).toBeUndefined();
  });
  it.each([
    [{ host: 'host-c' }, /cloud_properties\.host: expected one of the configured hosts \(host-a, host-b\), got "host-c"/],
    [{ hosts: ['host-a', 'nope'] }, /cloud_properties\.hosts\[1\]: expected one of the configured hosts \(host-a, host-b\), got "nope"/],
    [{ hosts: [] }, /cloud_properties\.hosts: expected a non-empty list/],
    [{ hosts: 'host-a' }, /cloud_properties\.hosts: expected a non-empty list.*got "host-a"/],
    [{ host: 'host-a', hosts: ['host-b'] }, /either host or hosts, not both/],
  ])('refuses %j naming the key and the value', (props, message) => {
    expect(() => candidateHosts(props, known)).toThrow(message);
  });
});
