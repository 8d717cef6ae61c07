// The public surface of src/xml: pure renderers and parsers for libvirt XML.
export { renderDomain, renderLxcDomain, renderDiskDevice, renderInterfaceDevice, parseDomain } from './domain.js';
export { renderVmMetadata, parseVmMetadata } from './metadata.js';
export { renderFenceDomain, parseFence } from './fence.js';
export { renderVolume, parseVolume, renderDirPool, parsePool, renderBackup } from './storage.js';
export { renderNetwork, renderDhcpHost, parseNetwork, parseDhcpRanges } from './network.js';
export { renderVboxDomain, parseVboxDomain, vboxDiskTarget, VBOX_NIC_MODELS, VBOX_LIMITS, VBOX_SATA_PORTS, VBOX_DOMAIN_DEFAULTS } from './vbox-domain.js';
export type { VboxDomainSpec, VboxVmDomain, VboxHardDisk, VboxSettingsMedium, VboxInterface, VboxNicModel, ParsedVboxDomain, ParsedVboxDisk, ParsedVboxInterface } from './vbox-domain.js';
export { XmlRenderError, XmlParseError } from './errors.js';
export { DOMAIN_DEFAULTS, LXC_DOMAIN_DEFAULTS, NETWORK_DEFAULTS, VOLUME_DEFAULTS } from './defaults.js';
export * from './types.js';
