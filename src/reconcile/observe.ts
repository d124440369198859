import type { ResolvedProject } from '../compose/resolve.js';
import { projectKeySpec, read } from '../resources/keypair.js';
import type { Keys, ObservedOf, ResourceKind } from '../resources/kind.js';
import { kinds } from '../resources/registry.js';
import type { ProjectLayout } from '../state/layout.js';
import type { Desired } from './desired.js';
import type { ImageInputs } from '../resources/image.js';
import { readImageRecord, type Upstream } from '../images/store.js';
import { sourcesOf } from '../images/source.js';

// Observed state: what is really on the host, for every resource the file names and every
// resource of the project on the host that it no longer names (a removed service's instances,
// old volumes). Everything is observed in parallel.

export type Observed = { [K in ResourceKind]: Record<string, ObservedOf<K>> };

/** The keys the seeds are rendered with: the project's public key, each instance's host key pair. */
export async function observeKeys(project: ResolvedProject, layout: ProjectLayout): Promise<Keys> {
  const hosts = await Promise.all(
    project.instances.map(
      async (i) => [i.name, await read({ dir: layout.instance(i.name).hostKey })] as const,
    ),
  );
  return { project: (await read(projectKeySpec(layout)))?.publicKey, hosts: Object.fromEntries(hosts) };
}

/** The cache's record of each catalog or URL image of the project (which versions it holds). */
export async function observeImages(
  project: ResolvedProject,
  layout: ProjectLayout,
  inputs: Omit<ImageInputs, 'records'>,
): Promise<ImageInputs> {
  const sources = sourcesOf(project.services);
  const records = Object.fromEntries(
    await Promise.all(
      sources.map(async (source) => [source.key, await readImageRecord(layout.stateDir, source)] as const),
    ),
  );
  if (inputs.policy !== 'always') return { ...inputs, records };
  // --pull always: ask upstream what it serves now (images the lock file pins need no asking).
  // The HTTP client loads only for this: other plans read the cache's records alone.
  const [{ publishedDigest, unchangedUpstream }, { formatDigest }] = await Promise.all([
    import('../images/pull.js'),
    import('../images/download.js'),
  ]);
  const upstream = await Promise.all(
    sources
      .filter((source) => !inputs.lock?.images[source.name])
      .map(async (source): Promise<[string, Upstream]> => {
        const { key } = source;
        const digest = await publishedDigest(source);
        if (digest) return [key, { digest: formatDigest(digest) }];
        const record = records[key];
        const current = record?.versions.find((v) => v.file === record.current);
        return [key, { unchanged: current !== undefined && (await unchangedUpstream(source, current)) }];
      }),
  );
  return { ...inputs, records, upstream: Object.fromEntries(upstream) };
}

export async function observeState(desired: Desired): Promise<Observed> {
  const { layout } = desired;
  const observed = await Promise.all(
    Object.values(kinds).map(async (kind) => {
      const specs = desired.specs[kind.kind] as Map<string, unknown>;
      const { onHost } = kind as { onHost?: (layout: ProjectLayout) => Promise<string[]> };
      const names = [...new Set([...specs.keys(), ...(onHost ? await onHost(layout) : [])])];
      const seen = await Promise.all(
        names.map(
          async (name) => [name, await kind.observe(name, specs.get(name) as never, layout)] as const,
        ),
      );
      return [kind.kind, Object.fromEntries(seen)] as const;
    }),
  );
  return Object.fromEntries(observed) as unknown as Observed;
}
