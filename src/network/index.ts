// Pure network planning for create_vm: BOSH networks → NICs, MACs, agent settings.
export {
  planNetworks,
  MAX_NICS,
  MAX_NETWORKS,
  type NicPlan,
  type NetworkPlan,
  type NicAddress,
  type NicSource,
  type DelegatedPrefix,
  type NetworkDefaults,
  type PlanOptions,
} from './plan.js';
export {
  parseIp,
  tryParseIp,
  sameIp,
  expandIp,
  netmaskToPrefix,
  prefixToNetmask,
  inSubnet,
  networkBase,
  formatCidr,
  maxPrefix,
  type IpFamily,
  type ParsedIp,
} from './ip.js';
export { checkMac, randomQemuMac, QEMU_OUI, type MacCheck } from './mac.js';
export { NetworkSettingsSchema, NetworkCloudPropertiesSchema, type NetworkSettings, type NetworkCloudProperties } from './schema.js';
export { reservedAddressReason, type TakenByNetwork } from './reserved.js';
export { overlaps, meetsRange, netmaskMismatch, prefixAgainstSubnets, subnetCidr, type Block, type SubnetOfNetwork } from './overlap.js';
