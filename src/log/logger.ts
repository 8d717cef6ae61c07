// Logging: pino JSON lines on stderr only (stdout carries the response and nothing
// else), one child logger per request, and a short human summary collected for the
// response's `log`. Every object and message is redacted before it is written.
import pino, { type Logger } from 'pino';
import { redact, redactString } from './redact.js';

export type { Logger };

export function createLogger(level: string = process.env.BOSH_LIBVIRT_CPI_LOG_LEVEL ?? 'debug'): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        // Runs on every merged object (bindings excluded): the one place redaction
        // is applied for structured fields.
        log: (obj) => redact(obj),
      },
      hooks: {
        logMethod(args, method) {
          // Redact string arguments too (messages and printf-style values).
          method.apply(this, args.map((a) => (typeof a === 'string' ? redactString(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

let latest: CallSummary | undefined;

/**
 * A line for the response's `log` from code below the handlers (a backend saying the VM
 * was restarted to attach a disk). It goes to the call this process serves: bin/cpi
 * serves one call per process.
 */
export function tellCaller(line: string): void {
  latest?.add(line);
}

/** What a call tells the caller in the response's `log`: a few readable lines. */
export class CallSummary {
  private readonly lines: string[] = [];
  constructor() {
    latest = this;
  }
  add(line: string): void {
    this.lines.push(redactString(line));
  }
  toString(): string {
    return this.lines.join('\n');
  }
}
