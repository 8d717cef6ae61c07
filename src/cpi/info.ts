import { defineMethod } from './method.js';

import { API_VERSION_INFO as API_VERSION } from '../rpc/version.js';

export const info = defineMethod('info', [], (ctx) => {
  ctx.summary.add(`info: api_version ${API_VERSION}, backend ${ctx.backend.name}`);
  return { api_version: API_VERSION, stemcell_formats: ctx.backend.stemcellFormats };
});
