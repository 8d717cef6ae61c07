// Runs in every test file (vitest.config.ts setupFiles).
import { afterAll } from 'vitest';
import { removeScratchDirs } from './scratch.js';

afterAll(() => removeScratchDirs());
