// What every handler receives: the validated config, the request's logger and
// summary, and a lazily opened driver (info never connects to libvirt).
import type { Config } from '../config/schema.js';
import type { Driver } from '../driver/driver.js';
import type { Backend } from '../driver/backends.js';
import type { Logger, CallSummary } from '../log/logger.js';

export interface CallContext {
  method: string;
  /** the request's api_version (absent means 1) */
  apiVersion: number;
  /** context.vm.stemcell.api_version, when the director knows it */
  stemcellApiVersion?: number;
  requestId?: string;
  config: Config;
  backend: Backend;
  log: Logger;
  summary: CallSummary;
  driver(): Promise<Driver>;
}
