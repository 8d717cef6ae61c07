// Loads a backend's profile: its code is imported only when a call needs it, and this
// table is kept out of backends.ts so the small bin/cpi entry (which answers `info`)
// does not bundle any backend.
import { notImplemented, type Backend } from './backends.js';
import type { BackendProfile } from './shared/profile.js';

/** The backend's profile, or NotImplemented naming what works instead. */
export async function loadProfile(backend: Backend, uri: string): Promise<BackendProfile> {
  switch (backend.implemented ? backend.name : undefined) {
    case 'qemu':
      return (await import('./qemu/profile.js')).qemuProfile;
    case 'lxc':
      return (await import('./lxc/profile.js')).lxcProfile;
    case 'vbox':
      return (await import('./vbox/profile.js')).vboxProfile;
    default:
      throw notImplemented(backend, uri);
  }
}
