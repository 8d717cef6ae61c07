// pino's line format without pino. `info` is answered by dist/cpi.mjs alone, and loading
// pino there (with sonic-boom, thread-stream and worker_threads) was most of what `info`
// cost beyond starting node (bench/info-startup.mjs). The entry writes its few lines (the
// info fast path, a crash before the core is loaded) with this; the core logs with pino.
import { writeSync } from 'node:fs';
import { redact, redactString } from './redact.js';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

export interface LineLogger {
  debug(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  fatal(obj: object, msg: string): void;
}

/** Lines shaped as src/log/logger.ts's pino writes them: level label, ISO time, pid, the redacted fields, msg. */
export function createLineLogger(level: string = process.env.BOSH_LIBVIRT_CPI_LOG_LEVEL ?? 'debug'): LineLogger {
  // An unknown level is the core's to report (pino refuses it); until then log as by default.
  const threshold = LEVELS[level] ?? LEVELS.debug!;
  const at = (label: string) => (obj: object, msg: string) => {
    if (LEVELS[label]! < threshold) return;
    const line = { level: label, time: new Date().toISOString(), pid: process.pid, ...redact(obj), msg: redactString(msg) };
    writeSync(2, `${JSON.stringify(line)}\n`);
  };
  return { debug: at('debug'), error: at('error'), fatal: at('fatal') };
}
