import { z } from 'zod';
import { defineMethod } from './method.js';
import { arg, cidArg, cloudProperties, stringifyValues } from './args.js';
import type { StemcellCID } from '../driver/cids.js';

export const createStemcell = defineMethod(
  'create_stemcell',
  [
    arg('image_path', z.string().min(1).max(4096).refine((p) => !p.includes('\0'), 'no NUL bytes'), 'the path of the stemcell image file (no NUL bytes)'),
    arg('cloud_properties', cloudProperties, "an object (the stemcell manifest's cloud_properties)"),
    arg('env', z.object({ tags: z.record(z.string(), z.unknown()).optional() }).passthrough().nullable(), 'an object like {"tags": {...}} (API v3)', true),
  ],
  async (ctx, imagePath, props, env) => {
    const driver = await ctx.driver();
    const cid = await driver.createStemcell(imagePath, props, stringifyValues(env?.tags ?? {}));
    ctx.summary.add(`create_stemcell: imported ${imagePath} as ${cid}`);
    return cid;
  },
);

export const deleteStemcell = defineMethod('delete_stemcell', [cidArg('stemcell_cid', 'sc')], async (ctx, cid) => {
  const driver = await ctx.driver();
  await driver.deleteStemcell(cid as StemcellCID);
  ctx.summary.add(`delete_stemcell: ${cid} is gone`);
  return null;
});
