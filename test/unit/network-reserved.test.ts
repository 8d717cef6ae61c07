// Which addresses of a subnet a VM may not take (src/network/reserved.ts).
import { describe, expect, it } from 'vitest';
import { reservedAddressReason } from '../../src/network/index.js';

const v4 = { address: '198.18.110.1', prefix: 24 };
const v6 = { address: 'fd00:110::1', prefix: 64 };

describe('reservedAddressReason', () => {
  it('refuses the IPv4 network and broadcast addresses', () => {
    expect(reservedAddressReason('198.18.110.0', v4)).toBe('the network address of 198.18.110.0/24');
    expect(reservedAddressReason('198.18.110.255', v4)).toBe('the broadcast address of 198.18.110.0/24');
    expect(reservedAddressReason('198.18.111.127', { address: '198.18.111.64', prefix: 26 })).toBe('the broadcast address of 198.18.111.64/26');
  });

  it('refuses the IPv6 subnet-router anycast address, in any spelling', () => {
    expect(reservedAddressReason('fd00:110::', v6)).toBe('the subnet-router anycast address of fd00:110::/64');
    expect(reservedAddressReason('fd00:0110:0000:0000:0000:0000:0000:0000', v6)).toBe('the subnet-router anycast address of fd00:110::/64');
  });

  it('refuses what the network itself uses, named as the caller names it', () => {
    const taken = [{ ip: '198.18.110.1', what: 'the gateway' }, { ip: 'fd00:110::1', what: 'the gateway' }];
    expect(reservedAddressReason('198.18.110.1', v4, taken)).toBe('the gateway');
    expect(reservedAddressReason('fd00:110:0:0::1', v6, taken)).toBe('the gateway');
  });

  it('accepts ordinary hosts, addresses outside the subnet, and point-to-point lengths', () => {
    for (const ip of ['198.18.110.2', '198.18.110.254']) expect(reservedAddressReason(ip, v4)).toBeUndefined();
    expect(reservedAddressReason('fd00:110::ffff', v6)).toBeUndefined();
    expect(reservedAddressReason('198.18.111.0', v4)).toBeUndefined();
    expect(reservedAddressReason('198.18.110.0', { address: '198.18.110.0', prefix: 31 })).toBeUndefined();
    expect(reservedAddressReason('198.18.110.1', { address: '198.18.110.0', prefix: 31 })).toBeUndefined();
    expect(reservedAddressReason('fd00:110::', { address: 'fd00:110::', prefix: 127 })).toBeUndefined();
  });
});
