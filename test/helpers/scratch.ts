// Temporary directories for tests, removed after each test file (test/helpers/setup.ts
// registers the cleanup for every file) — also after a failure — so repeated runs do
// not pile up files in /tmp.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeScratchDirs(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}
