import { basename } from 'node:path';
import type { ResolvedService } from '../compose/resolve.js';
import { UserError } from '../errors.js';
import type { ImageLock } from '../images/lockfile.js';
import type { PullOptions, PullPolicy, Pulled } from '../images/pull.js';
import type { Emit } from '../events.js';
import { mirrored, type ImageSource } from '../images/source.js';
import {
  chooseVersion,
  versionPath,
  type ImageRecord,
  type ImageVersion,
  type Upstream,
} from '../images/store.js';
import { formatBytes } from '../compose/units.js';
import { exists } from '../util/fs.js';
import type { DesiredInput, Kind } from './kind.js';

// Base images: a local file named in the compose file, or a version of a catalog or URL image
// in the cache (images/store.ts). Which version a project uses is decided here, once per plan:
// the one pinned by the lock file, else the one the project's disks were made on, else the
// newest cached; a missing one is pulled. A newer version in the cache is reported, never used
// by surprise: `up --pull always` asks upstream and moves the project to what it serves now,
// as a pull and recreates the plan shows.

export interface ImageSpec {
  /** `debian:12` (canonical tag), the URL, or the local path as written. */
  name: string;
  path: string;
  format: 'qcow2' | 'raw';
  /** The services whose instances start from it. */
  services: string[];
  /** Where a catalog or URL image comes from; absent for a local file. */
  source?: ImageSource;
  /** The chosen version is still to be downloaded: `newer` when the cache has an older one. */
  pull?: { expected?: string; size?: number; newer: boolean };
  /** A version newer than the chosen one is in the cache. */
  newer?: ImageVersion;
  /** The digest the chosen version was (or is to be) verified with; absent for a local file. */
  digest?: string;
}

export interface ImageObserved {
  exists: boolean;
  /** For an image to download: its size, when the server says it (a HEAD request). */
  size?: number;
}

/** What the plan knows of the image cache and the project's images (read before desired). */
export interface ImageInputs {
  /** Each cached image's record, by source key. */
  records: Record<string, ImageRecord | undefined>;
  /** The version each image's disks were made on, by source key (the project record). */
  pins: Record<string, string>;
  lock?: ImageLock;
  /** `--pull always`: what upstream serves now, by source key (asked by observe). */
  upstream?: Record<string, Upstream>;
  /** `--locked`: every image must be in the lock file. */
  locked?: boolean;
  policy: PullPolicy;
}

const noImageInputs: ImageInputs = { records: {}, pins: {}, policy: 'missing' };

/**
 * The image of a service, by its name in the plan. One local file read as two formats is two
 * images (`./disk.img#raw`).
 */
export const imageName = ({ image, spec }: ResolvedService) =>
  image.source?.name ?? (spec.image_format ? `${image.ref}#${image.format}` : image.ref);

const memo = new WeakMap<DesiredInput, Map<string, ImageSpec>>();

/** One spec per image, with the services that use it (a cache file is pulled once). Pure. */
export function imageSpecs(input: DesiredInput): Map<string, ImageSpec> {
  let specs = memo.get(input);
  if (specs) return specs;
  specs = new Map();
  const inputs = input.images ?? noImageInputs;
  for (const service of input.project.services) {
    const name = imageName(service);
    const known = specs.get(name);
    if (known) known.services.push(service.name);
    else specs.set(name, { ...baseOf(service, input.layout.stateDir, inputs), services: [service.name] });
  }
  memo.set(input, specs);
  return specs;
}

/** The spec of a service's base image. */
export const serviceImage = (input: DesiredInput, service: ResolvedService): ImageSpec =>
  imageSpecs(input).get(imageName(service))!;

function baseOf(
  service: ResolvedService,
  stateDir: string,
  inputs: ImageInputs,
): Omit<ImageSpec, 'services'> {
  const { image } = service;
  if (!image.source) {
    if (image.path === undefined)
      throw new UserError(
        `service ${service.name}: a dockerfile's FROM cannot name the image yet; set image: (a catalog name, URL or local file)`,
      );
    return { name: image.ref, path: image.path, format: image.format };
  }
  const entry = inputs.lock?.images[image.source.name];
  if (inputs.locked && !entry)
    throw new UserError(
      `${inputs.lock?.file ?? 'holos.images.lock'}: no entry for ${image.source.name} (service ${service.name}) and --locked was given; run holos images lock`,
    );
  const source = entry ? { ...image.source, url: entry.url } : image.source;
  const choice = chooseVersion({
    source,
    record: inputs.records[source.key],
    pinned: inputs.pins[source.key],
    locked: entry?.digest,
    upstream: inputs.upstream?.[source.key],
  });
  const digest =
    choice.expected ?? inputs.records[source.key]?.versions.find((v) => v.file === choice.file)?.digest;
  return {
    name: source.name,
    path: versionPath(stateDir, choice.file),
    ...(digest && { digest }),
    format: source.format,
    source,
    ...(choice.pull && {
      pull: {
        ...(choice.expected && { expected: choice.expected }),
        ...(entry?.size !== undefined && { size: entry.size }),
        newer: inputs.records[source.key] !== undefined,
      },
    }),
    ...(choice.newer && { newer: choice.newer }),
  };
}

/** The version file of each image of the project, by source key: what the project record pins. */
export function pinsOf(specs: Iterable<ImageSpec>): Record<string, string> {
  const pins: Record<string, string> = {};
  for (const spec of specs) if (spec.source) pins[spec.source.key] = basename(spec.path);
  return pins;
}

export const image: Kind<'image', ImageSpec, ImageObserved> = {
  kind: 'image',

  desired: imageSpecs,

  async observe(_name, spec) {
    if (!spec) return { exists: false };
    if (await exists(spec.path)) return { exists: true };
    if (!spec.pull || !spec.source || spec.pull.size !== undefined) return { exists: false };
    // How much a pull will download, for the plan; a server that does not say is no error.
    // The HTTP client (undici) loads only here and in a pull: a plan of cached images never needs it.
    const { head } = await import('../images/download.js');
    const answer = await head(mirrored(spec.source.url), { timeoutMs: 5_000 }).catch(() => undefined);
    return { exists: false, ...(answer?.size !== undefined && answer.status < 300 && { size: answer.size }) };
  },

  diff(name, spec, observed, ctx) {
    if (!spec) return [];
    const users = ctx.project.services.filter(
      (s) => spec.services.includes(s.name) && ctx.targetOf(s.name) === 'running' && s.spec.replicas > 0,
    );
    if (users.length === 0) return [];
    const least = spec.source?.minMemoryMb ?? 0;
    for (const s of users)
      if (s.spec.vm.memory_mb < least)
        ctx.notice(
          `service ${s.name}: ${name} wants at least ${least} MiB of memory, vm.memory_mb is ${s.spec.vm.memory_mb}`,
        );
    if (spec.newer)
      ctx.notice(
        `a newer ${name} is in the cache (pulled ${spec.newer.pulled_at.slice(0, 10)}); holos up --pull always moves ${users.map((s) => s.name).join(', ')} to it`,
      );
    if (observed.exists) return [];
    if (!spec.source)
      throw new UserError(`image file ${spec.path} is missing; point image: at a qcow2 or raw disk file`);
    if (ctx.pullPolicy === 'never')
      throw new UserError(
        `image ${name} is not in the cache and --pull never was given; run holos pull ${name}`,
      );
    const bytes = spec.pull?.size ?? observed.size;
    const size = bytes === undefined ? '' : ` ${formatBytes(bytes)}`;
    const from = mirrored(spec.source.url);
    return [
      {
        kind: 'image',
        name,
        verb: 'pull',
        cause: spec.pull?.newer ? 'upstream' : 'missing',
        reason: `${spec.pull?.newer ? 'a newer build upstream (--pull always): ' : ''}download${size} from ${from}${from === spec.source.url ? '' : ' (HOLOS_IMAGE_MIRROR)'}`,
      },
    ];
  },

  execute: {
    async pull({ spec }, ctx) {
      await pullWithEvents(
        spec!.source!,
        {
          stateDir: ctx.layout.stateDir,
          // A newer build (--pull always) is downloaded even where the cache has an older one.
          policy: spec!.pull?.newer ? 'always' : 'missing',
          file: basename(spec!.path),
          ...(spec!.pull?.expected && { expected: spec!.pull.expected }),
        },
        ctx.emit,
        ctx.signal,
      );
    },
  },
};

/** Pulls an image, telling its progress, waits and warnings as events. */
export async function pullWithEvents(
  source: ImageSource,
  options: Pick<PullOptions, 'stateDir' | 'policy' | 'expected' | 'file'>,
  emit: Emit,
  signal?: AbortSignal,
): Promise<Pulled> {
  let started = 0;
  const { pullImage } = await import('../images/pull.js');
  return pullImage({
    ...options,
    source,
    onProgress: (p) => {
      const now = Date.now();
      emit({
        type: 'download',
        image: source.name,
        url: p.url,
        received: p.received,
        ...(p.total !== undefined && { total: p.total }),
        resumed_from: p.resumedFrom,
        elapsed_ms: now - (started ||= now),
        done: p.done,
      });
    },
    onWait: (message) => emit({ type: 'waiting', message }),
    warn: (message) => emit({ type: 'warning', message }),
    ...(signal && { signal }),
  });
}
