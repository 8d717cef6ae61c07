// Which layers make an image, in order, from the JSON documents of an image archive
// (pure): an `oci-layout` tar (index.json → manifest → layers, blobs at
// blobs/<algorithm>/<hex>) or a `docker save` tar (manifest.json → Layers, paths in the
// archive). Docker 25+ writes both; the OCI index is preferred then.
import { z } from 'zod';

export interface LayerRef {
  /** the blob's name in the archive */
  path: string;
  /** `sha256:<hex>` when the archive states it (OCI descriptors), checked while applying */
  digest?: string;
  size?: number;
}

export interface ImageLayers {
  kind: 'oci-layout' | 'docker-save';
  layers: LayerRef[];
}

export class BadImageIndex extends Error {}

const Descriptor = z.looseObject({
  mediaType: z.string().optional(),
  digest: z.string().regex(/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/, 'a sha256:<64 hex> or sha512:<128 hex> digest'),
  size: z.number().int().nonnegative(),
  platform: z.looseObject({ os: z.string().optional(), architecture: z.string().optional(), variant: z.string().optional() }).optional(),
  urls: z.array(z.string()).optional(),
});
type Descriptor = z.infer<typeof Descriptor>;
const Index = z.looseObject({ manifests: z.array(Descriptor).min(1, 'at least one manifest') });
const Manifest = z.looseObject({ layers: z.array(Descriptor) });
const DockerManifest = z.array(z.looseObject({ Layers: z.array(z.string().min(1)) })).min(1, 'one image');

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

/** `docker save`'s manifest.json: one image, its Layers in order. */
export function dockerSaveLayers(manifestJson: string): ImageLayers {
  const images = parse(DockerManifest, manifestJson, 'manifest.json');
  if (images.length > 1) throw new BadImageIndex(`manifest.json describes ${images.length} images; a stemcell is one image (docker save one image)`);
  return { kind: 'docker-save', layers: images[0]!.Layers.map((path) => ({ path: path.replace(/^(\.\/)+/, '') })) };
}

/**
 * The OCI index's image for this host: the only manifest, or the one whose platform is
 * linux/`arch`. Nested indexes (a multi-platform image) are followed through `blob`.
 */
export function ociLayers(indexJson: string, blob: (path: string) => string | undefined, arch: string): ImageLayers {
  let doc = parse(Index, indexJson, 'index.json');
  let where = 'index.json';
  for (let depth = 0; depth < 4; depth++) {
    const chosen = pick(doc.manifests, arch, where);
    const path = blobPath(chosen.digest);
    const text = blob(path);
    if (text === undefined) throw new BadImageIndex(`${where} names ${chosen.digest}, but the archive holds no ${path}`);
    if (INDEX_TYPES.has(chosen.mediaType ?? '') || looksLikeIndex(text)) {
      doc = parse(Index, text, path);
      where = path;
      continue;
    }
    const manifest = parse(Manifest, text, path);
    return {
      kind: 'oci-layout',
      layers: manifest.layers.map((l, i) => {
        if (/zstd/.test(l.mediaType ?? '')) throw new BadImageIndex(`layer ${i} (${l.digest}) is zstd-compressed (${l.mediaType}); expected tar or tar+gzip layers`);
        if (l.urls?.length) throw new BadImageIndex(`layer ${i} (${l.digest}) is a foreign layer to download from ${l.urls[0]}; expected every layer in the archive`);
        return { path: blobPath(l.digest), digest: l.digest, size: l.size };
      }),
    };
  }
  throw new BadImageIndex('image indexes nested more than 4 deep');
}

/** Node's process.arch → the OCI architecture name. */
export function ociArch(nodeArch: string): string {
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[nodeArch] ?? nodeArch;
}

export function blobPath(digest: string): string {
  const [alg, hex] = digest.split(':');
  return `blobs/${alg}/${hex}`;
}

/** A descriptor without a mediaType: an index has manifests and no layers. */
function looksLikeIndex(text: string): boolean {
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    return Array.isArray(o.manifests) && !Array.isArray(o.layers);
  } catch {
    return false;
  }
}

function pick(manifests: Descriptor[], arch: string, where: string): Descriptor {
  if (manifests.length === 1) return manifests[0]!;
  const fits = manifests.filter((m) => m.platform?.os === 'linux' && m.platform.architecture === arch);
  if (fits.length === 1) return fits[0]!;
  const platforms = manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}` : 'no platform')).join(', ');
  throw new BadImageIndex(`${where} lists ${manifests.length} manifests (${platforms}) and ${fits.length === 0 ? 'none is' : 'several are'} for linux/${arch}; expected one image for this host`);
}

function parse<T>(schema: z.ZodType<T>, text: string, name: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new BadImageIndex(`${name} is not JSON (${(e as Error).message})`);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new BadImageIndex(`${name}: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return r.data;
}
