// Bundles each executable into one ESM file so a CPI call loads a single module
// (every call is a new process; see bench/info-startup.mjs).
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

// zod re-exports every locale it ships (~100 files) through `z.locales`; the CPI uses
// only English messages. Resolving the locale index to English alone halves the
// bundle, and parsing the bundle is most of what a CPI call pays before it starts.
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes('/node_modules/zod/') ? { path: 'zod-locales', namespace: 'zod-locales', pluginData: args.resolveDir } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: "export { default as en } from './en.js';",
      resolveDir: args.pluginData.replace(/classic$|mini$/, 'locales'),
      loader: 'js',
    }));
  },
};

const common = {
  plugins: [zodEnglishOnly],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  // pino and friends are CommonJS: give the ESM bundle a require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
};

// bin/cpi is two files: a small entry (dist/cpi.mjs, which answers `info`) and the rest
// (dist/cpi-core.mjs), which the entry imports from its own directory when needed.
const entries = [
  ['src/main.ts', 'dist/cpi.mjs'],
  ['src/core.ts', 'dist/cpi-core.mjs'],
  ['src/cli/main.ts', 'dist/cli.mjs'],
  ['src/demo/main.ts', 'dist/demo.mjs'],
].filter(([src]) => existsSync(src));

await Promise.all(entries.map(([src, out]) => build({ ...common, entryPoints: [src], outfile: out })));
