import { defineMethod } from './method.js';
import { infoAnswer } from '../bosh-protocol/fast-info.js';

export const info = defineMethod('info', [], (ctx) => {
  const { result, log } = infoAnswer(ctx.backend, ctx.config.libvirt.uri);
  ctx.summary.add(log);
  return result;
});
