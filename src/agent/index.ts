// The agent module's public surface: what the BOSH agent reads and the drive that carries it.
export { buildAgentSettings, parseAgentSettings, withPersistentDisk, withoutPersistentDisk, agentSettingsSchema, diskHintSchema } from './settings.js';
export type { AgentSettings, AgentSettingsInput, DiskHint } from './settings.js';
export { buildConfigDrive, configDriveFiles, CONFIG_DRIVE_LABEL } from './config-drive.js';
export type { ConfigDriveMeta, ConfigDriveOptions } from './config-drive.js';
export { writeIso, SECTOR_SIZE } from './iso9660.js';
export type { IsoFile, IsoOptions } from './iso9660.js';
