// `import-stemcell <stemcell.tgz>`: what `bosh upload-stemcell` + create_stemcell do,
// for an operator without a director. The outer tarball (stemcell.MF + image) is read
// once as a stream; `image` goes to a temp file because create_stemcell takes a path
// and the manifest may come after the image in the tarball (its cloud_properties are
// needed before the upload starts). The image's digest is checked against the
// manifest while it is written, then the driver's own create_stemcell uploads it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { openDriver } from '../driver/open.js';
import { BACKENDS } from '../driver/backends.js';
import type { Host } from '../driver/shared/host.js';
import { CliError, toJson } from './common.js';
import { Progress } from './progress.js';
import { notRegularFile } from '../util/regular-file.js';

const ManifestSchema = z.looseObject({
  name: z.string().min(1),
  version: z.union([z.string(), z.number()]).transform(String),
  api_version: z.number().int().optional(),
  sha1: z.string().optional(),
  stemcell_formats: z.array(z.string()).optional(),
  cloud_properties: z.record(z.string(), z.unknown()).nullable().optional(),
});
export type StemcellManifest = z.infer<typeof ManifestSchema>;

const MANIFEST_LIMIT = 1 << 20;

export interface Extracted {
  manifest: StemcellManifest;
  imagePath: string;
  imageBytes: number;
}

function entryName(name: string): string {
  return name.replace(/^(\.\/)+/, '');
}

/** Streams the tarball once: stemcell.MF into memory, image into `dir/image`. */
export async function extractStemcell(tarball: string, dir: string, progress: (n: number) => void): Promise<Extracted> {
  const imagePath = join(dir, 'image');
  let manifestText: string | undefined;
  let imageBytes = -1;
  const sha1 = createHash('sha1');
  const sha256 = createHash('sha256');
  const tar = tarExtract();
  tar.on('entry', (header, entry, next) => {
    const name = entryName(header.name);
    const done = (e?: unknown) => (e ? tar.destroy(e as Error) : next());
    if (name === 'stemcell.MF' && header.type === 'file') {
      const chunks: Buffer[] = [];
      let size = 0;
      entry.on('data', (data: unknown) => {
        const c = data as Buffer;
        size += c.length;
        if (size > MANIFEST_LIMIT) entry.destroy(new CliError(`${tarball}: stemcell.MF is larger than ${MANIFEST_LIMIT} bytes`));
        else chunks.push(c);
      });
      entry.on('end', () => {
        manifestText = Buffer.concat(chunks).toString('utf8');
        done();
      });
      entry.on('error', done);
    } else if (name === 'image' && header.type === 'file') {
      const digest = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          sha1.update(chunk);
          sha256.update(chunk);
          cb(null, chunk);
        },
      });
      pipeline(entry, digest, createWriteStream(imagePath)).then(() => {
        imageBytes = header.size ?? 0;
        done();
      }, done);
    } else {
      entry.on('end', () => done());
      entry.resume();
    }
  });
  const counted = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      progress(chunk.length);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(tarball), counted, createGunzip(), tar);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`Cannot read ${tarball} as a stemcell tarball (gzipped tar of stemcell.MF and image): ${(e as Error).message}`);
  }
  if (manifestText === undefined) throw new CliError(`${tarball} holds no stemcell.MF: not a stemcell tarball`);
  if (imageBytes < 0) throw new CliError(`${tarball} holds no image: not a full stemcell (light stemcells have nothing to import)`);
  let doc: unknown;
  try {
    doc = parseYaml(manifestText);
  } catch (e) {
    throw new CliError(`${tarball}: stemcell.MF is not valid YAML: ${(e as Error).message}`);
  }
  const parsed = ManifestSchema.safeParse(doc);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new CliError(`${tarball}: stemcell.MF field ${i.path.join('.') || '(top level)'}: ${i.message}`);
  }
  const manifest = parsed.data;
  // stemcell.MF's sha1 is plain hex SHA-1, or `sha256:<hex>` in newer stemcells.
  if (manifest.sha1) {
    const [algo, want] = manifest.sha1.includes(':') ? (manifest.sha1.split(':', 2) as [string, string]) : ['sha1', manifest.sha1];
    const got = algo === 'sha256' ? sha256.digest('hex') : algo === 'sha1' ? sha1.digest('hex') : undefined;
    if (got !== undefined && got !== want.toLowerCase()) {
      throw new CliError(`${tarball}: image ${algo} is ${got} but stemcell.MF says ${want}: the tarball is corrupt or was altered`);
    }
  }
  return { manifest, imagePath, imageBytes };
}

export async function importStemcell(config: Config, log: Logger, tarball: string, opts: { tags: Record<string, string>; json: boolean }): Promise<number> {
  let total: number;
  try {
    const kind = await notRegularFile(tarball);
    if (kind) throw new CliError(`${tarball} is ${kind}, expected a stemcell tarball (a regular file)`);
    total = statSync(tarball).size;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`Cannot read ${tarball}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'bosh-libvirt-cpi-stemcell-'));
  // Ctrl-C must not leave a gigabyte-sized temp copy behind.
  const onSignal = () => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const extracting = new Progress('extracting', total);
    const { manifest, imagePath, imageBytes } = await extractStemcell(tarball, dir, (n) => extracting.add(n));
    extracting.finish();
    process.stderr.write(`stemcell ${manifest.name}/${manifest.version}${manifest.api_version !== undefined ? ` (api_version ${manifest.api_version})` : ''}\n`);
    const supported = BACKENDS.qemu.stemcellFormats;
    if (manifest.stemcell_formats && !manifest.stemcell_formats.some((f) => supported.includes(f))) {
      process.stderr.write(`warning: stemcell_formats ${manifest.stemcell_formats.join(', ')} include none the qemu backend imports (${supported.join(', ')})\n`);
    }

    const driver = await openDriver(config, log);
    try {
      watchUpload(driver as Partial<{ host: Host }>, imageBytes);
      const cid = await driver.createStemcell(imagePath, manifest.cloud_properties ?? {}, opts.tags);
      if (opts.json) process.stdout.write(`${toJson({ stemcell_cid: cid, name: manifest.name, version: manifest.version })}\n`);
      else process.stdout.write(`${cid}\n`);
      return 0;
    } finally {
      await driver.close().catch(() => undefined);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The driver streams root.img into the volume itself; to show how far it got, this
 * process's connection counts the bytes of the big upload as they pass (the tiny
 * metadata sidecar upload is left alone). Nothing else is changed.
 */
function watchUpload(driver: Partial<{ host: Host }>, imageBytes: number): void {
  const volumes = driver.host?.conn.volumes;
  if (!volumes) return;
  const upload = volumes.upload.bind(volumes);
  volumes.upload = (vol, source, opts) => {
    if (vol.name.includes('.')) return upload(vol, source, opts);
    const length = opts?.length !== undefined && opts.length > 0n ? Number(opts.length) : imageBytes;
    const bar = new Progress('uploading', length);
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        bar.add((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    }
    return upload(vol, Readable.from(counted(), { objectMode: false }), opts).then(() => bar.finish());
  };
}
