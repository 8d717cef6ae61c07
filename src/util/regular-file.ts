// Paths that must name a regular file (a stemcell image, a stemcell tarball). Reading a
// FIFO blocks until some writer comes (forever, if none does) and a device may never
// end; stat looks at what the path is without opening it, so nothing blocks.
import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/** What `path` is when it is not a regular file, e.g. "a FIFO (named pipe)"; undefined for a regular file. */
export async function notRegularFile(path: string): Promise<string | undefined> {
  const st = await stat(path);
  return st.isFile() ? undefined : kindOf(st);
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}
