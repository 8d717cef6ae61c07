// The second half of bin/cpi: everything past `info`'s light path (zod schemas, the
// handlers, the driver, the libvirt client, XML, pino). Built as dist/cpi-core.mjs and
// imported on demand by dist/cpi.mjs from the same directory, so `info` — called
// before almost every CPI call — never has V8 scan it (bench/info-startup.mjs).
export { handleRequest } from './bosh-protocol/dispatch.js';
export { createLogger } from './log/logger.js';
