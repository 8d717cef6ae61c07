import { defineMethod } from './method.js';
import { arg, cidString, cloudProperties } from './args.js';
import { z } from 'zod';
import { NotImplemented } from '../errors.js';

// Managed networks are a vSphere/NSX feature of the director; on libvirt, operators
// define networks ahead of time and reference them by name in cloud_properties.
const why = 'managed networks are not offered by bosh-libvirt-cpi: define the libvirt network on the host and name it in the network\'s cloud_properties';

export const createNetwork = defineMethod(
  'create_network',
  [arg('network_definition', z.record(z.string(), z.unknown()), 'an object'), arg('cloud_properties', cloudProperties, 'an object', true)],
  () => {
    throw new NotImplemented(`create_network: ${why}`);
  },
);

export const deleteNetwork = defineMethod('delete_network', [arg('network_cid', cidString, 'a network CID')], () => {
  throw new NotImplemented(`delete_network: ${why}`);
});
