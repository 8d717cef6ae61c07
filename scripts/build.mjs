// Bundles each executable into one ESM file so a CPI call loads a single module
// (every call is a new process; see bench/info-startup.mjs).
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  legalComments: 'none',
  // pino and friends are CommonJS: give the ESM bundle a require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
};

await Promise.all([
  build({ ...common, entryPoints: ['src/main.ts'], outfile: 'dist/cpi.mjs' }),
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/cli.mjs' }).catch((e) => {
    if (!String(e).includes('Could not resolve')) throw e; // the operator CLI lands later
  }),
]);
