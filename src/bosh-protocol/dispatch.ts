// One request in, one response out. Every failure on the way — bad JSON, unknown
// method, broken config, bad arguments, a libvirt error, a bug — becomes a typed
// error in the response; nothing escapes as a crash.
import { parseRequest, type CpiRequest } from './request.js';
import { setLockHolderCall } from '../driver/shared/lock.js';
import { success, failure, type CpiResponse } from './response.js';
import { CpiError, NotImplemented } from '../errors.js';
import { METHODS } from '../cpi/methods.js';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { backendForConfig } from '../driver/backends.js';
import { openDriver } from '../driver/open.js';
import type { Driver } from '../driver/driver.js';
import type { CallContext } from '../cpi/context.js';
import { CallSummary, type Logger } from '../log/logger.js';
import { redact } from '../log/redact.js';
import { faultArmed, maybeFail } from '../util/faults.js';
import { typedError } from './classify.js';

export interface DispatchEnv {
  argv: string[];
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

export async function handleRequest(raw: string, { argv, env, logger }: DispatchEnv): Promise<CpiResponse> {
  const summary = new CallSummary();
  let log = logger;
  let driver: Driver | undefined;
  let methodName: string | undefined;
  try {
    const req = parseRequest(raw);
    methodName = req.method;
    log = logger.child({ request_id: req.context.request_id, method: req.method });
    log.debug({ request: redact(req) }, 'request');
    const method = METHODS.get(req.method);
    if (!method) throw new NotImplemented(`Unknown method "${req.method}": not part of the CPI contract`);
    // Named in every lock this call takes, so a waiter that gives up can say who held it.
    setLockHolderCall(`${req.method}${typeof req.arguments?.[0] === 'string' ? ` ${String(req.arguments[0]).slice(0, 120)}` : ''}${req.context.request_id ? `, request ${req.context.request_id}` : ''}`);

    const config = loadConfig(resolveConfigPath(argv, env), req.context);
    const ctx: CallContext = {
      method: req.method,
      apiVersion: req.api_version ?? 1,
      ...stemcellVersion(req),
      ...(req.context.request_id ? { requestId: req.context.request_id } : {}),
      config,
      backend: backendForConfig(config),
      log,
      summary,
      driver: async () => (driver ??= await openDriver(config, log)),
    };
    maybeFail(`handler:${req.method}`);
    if (faultArmed(`crash:${req.method}`)) setImmediate(() => { throw new Error('injected uncaught exception'); });
    if (faultArmed(`reject:${req.method}`)) void Promise.reject(new Error('injected unhandled rejection'));
    const result = await method.invoke(ctx, req.arguments);
    const res = success(result, summary.toString());
    log.debug({ result: redact(res.result) }, 'response');
    return res;
  } catch (err) {
    const res = failure(typedError(err, methodName), summary.toString());
    const level = err instanceof CpiError ? 'warn' : 'error';
    log[level]({ err: redact(err), error: res.error }, 'request failed');
    return res;
  } finally {
    if (driver) await driver.close().catch((e: unknown) => log.warn({ err: redact(e) }, 'closing the libvirt connection failed'));
  }
}

function stemcellVersion(req: CpiRequest): { stemcellApiVersion?: number } {
  const v = req.context.vm?.stemcell?.api_version;
  return typeof v === 'number' ? { stemcellApiVersion: v } : {};
}
