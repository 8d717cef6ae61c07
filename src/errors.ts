// The errors a CPI may answer with. Each class maps to one `Bosh::Clouds::*` type the
// director and the CLI know (cloudfoundry/bosh `bosh-director/lib/cloud/errors.rb`);
// anything else would reach them as UnknownError.

export interface CpiErrorJson {
  type: string;
  message: string;
  ok_to_retry: boolean;
}

export class CpiError extends Error {
  static readonly boshType: string = 'Bosh::Clouds::CpiError';
  readonly okToRetry: boolean;
  constructor(message: string, opts: { okToRetry?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.okToRetry = opts.okToRetry ?? false;
  }
  get boshType(): string {
    return (this.constructor as typeof CpiError).boshType;
  }
  toJSON(): CpiErrorJson {
    return { type: this.boshType, message: this.message, ok_to_retry: this.okToRetry };
  }
}

/** The method exists in the contract but this CPI (or backend) does not implement it. */
export class NotImplemented extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::NotImplemented';
}
/** The operation is understood but cannot be done here (e.g. shrinking a disk). */
export class NotSupported extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::NotSupported';
}
/** Anything wrong with the request, the configuration or the IaaS. */
export class CloudError extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::CloudError';
}
export class VMNotFound extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::VMNotFound';
}
export class NetworkNotFound extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::NetworkNotFound';
}
export class NoDiskSpace extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::NoDiskSpace';
}
export class DiskNotAttached extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::DiskNotAttached';
}
export class DiskNotFound extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::DiskNotFound';
}
export class VMCreationFailed extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::VMCreationFailed';
}
export class StemcellNotFound extends CpiError {
  static override readonly boshType = 'Bosh::Clouds::StemcellNotFound';
}

/** Render any value for an error message: short, single-line, never a secret dump. */
export function show(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    s = safeString(value);
  }
  if (s === undefined) s = safeString(value);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** String(value), which recurses into arrays and can overflow the stack too. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Array.isArray(value) ? '[an array too deep to show]' : `[${typeof value} that cannot be shown]`;
  }
}

/** A CloudError for bad input: names the field, the value and what was expected. */
export function badInput(field: string, value: unknown, expected: string): CloudError {
  return new CloudError(`Invalid ${field}: got ${show(value)}, expected ${expected}`);
}
