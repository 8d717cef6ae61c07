import { defineConfig } from 'vitest/config';

// Integration tiers talk to one real libvirtd; run files one at a time so tests that
// start guests under TCG do not starve each other on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/helpers/setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    reporters: ['default'],
  },
});
