import { readdir } from 'node:fs/promises';
import type { ResolvedProject } from '../compose/resolve.js';
import * as image from '../resources/image.js';
import * as instance from '../resources/instance.js';
import * as keypair from '../resources/keypair.js';
import type { ProjectLayout } from '../resources/layout.js';
import * as overlay from '../resources/overlay.js';
import * as seed from '../resources/seed.js';
import * as volume from '../resources/volume.js';
import { hostKeySpec, type Desired, type Keys } from './desired.js';

// Observed state: what is really on the host for the desired resources, and the instances on
// disk that the file no longer names. Every instance is observed in parallel.

export interface Observed {
  keypair: keypair.KeypairObserved;
  hostKeys: Record<string, keypair.KeypairObserved>;
  images: Map<string, image.ImageObserved>;
  volumes: Record<string, volume.VolumeObserved>;
  overlays: Record<string, overlay.OverlayObserved>;
  seeds: Record<string, seed.SeedObserved>;
  instances: Record<string, instance.InstanceObserved>;
  /** Instances with a directory in the state dir but not in the file. */
  strays: Record<string, instance.InstanceObserved>;
  /** Every named volume of the project on disk, used by the file or not. */
  volumesOnDisk: string[];
}

/** The keys the seeds are rendered with. */
export async function observeKeys(project: ResolvedProject, layout: ProjectLayout): Promise<Keys> {
  const hosts = await Promise.all(
    project.instances.map(
      async (i) =>
        [i.name, await keypair.read(hostKeySpec(i.name, layout.instance(i.name).hostKey))] as const,
    ),
  );
  return {
    project: (await keypair.read(keypair.desired(layout)))?.publicKey,
    hosts: Object.fromEntries(hosts),
  };
}

/** Instance directories under the project (anything with an applied record or a pid file). */
export async function instancesOnDisk(layout: ProjectLayout): Promise<string[]> {
  const entries = await readdir(layout.dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

const record = async <T>(names: string[], fn: (name: string) => Promise<T>): Promise<Record<string, T>> =>
  Object.fromEntries(await Promise.all(names.map(async (name) => [name, await fn(name)] as const)));

export async function observeState(desired: Desired): Promise<Observed> {
  const { layout } = desired;
  const byName = new Map(desired.instances.map((d) => [d.resolved.name, d]));
  const names = [...byName.keys()];
  const strayNames = (await instancesOnDisk(layout)).filter((name) => !byName.has(name));
  const [projectKey, hostKeys, images, volumes, overlays, seeds, instances, strays, volumesOnDisk] =
    await Promise.all([
      keypair.observe(desired.keypair),
      record(names, (n) => keypair.observe(byName.get(n)!.hostKey)),
      Promise.all([...desired.images].map(async ([svc, spec]) => [svc, await image.observe(spec)] as const)),
      record(
        desired.volumes.map((v) => v.name),
        (n) => volume.observe(desired.volumes.find((v) => v.name === n)!),
      ),
      record(names, (n) => overlay.observe(byName.get(n)!.overlay)),
      record(names, (n) => seed.observe(byName.get(n)!.seed)),
      record(names, (n) => instance.observe(layout.instance(n))),
      record(strayNames, (n) => instance.observe(layout.instance(n))),
      volume.onDisk(layout),
    ]);
  return {
    keypair: projectKey,
    hostKeys,
    images: new Map(images),
    volumes,
    overlays,
    seeds,
    instances,
    strays,
    volumesOnDisk,
  };
}
