// The first bytes of a file (a format's magic number, a disk image's header).
import { open } from 'node:fs/promises';

/** Up to `bytes` bytes from the start of the file at `path` (fewer when it is shorter). */
export async function readFileHead(path: string, bytes: number): Promise<Buffer> {
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await f.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await f.close();
  }
}
