import type { ResolvedInstance, ResolvedProject, ResolvedService } from '../compose/resolve.js';
import type { KeyPair } from '../ssh/keys.js';
import * as image from '../resources/image.js';
import * as instance from '../resources/instance.js';
import * as keypair from '../resources/keypair.js';
import type { ProjectLayout } from '../resources/layout.js';
import type { OverlaySpec } from '../resources/overlay.js';
import * as seed from '../resources/seed.js';
import * as volume from '../resources/volume.js';

// Desired state: every resource the project needs, from the resolved project and the keys
// that exist. Pure. Keys that do not exist yet render as placeholders; apply makes them and
// plans again before any instance starts, so no seed is ever written with a placeholder.

export interface Keys {
  project?: string;
  hosts: Record<string, KeyPair | undefined>;
}

export interface DesiredInstance {
  resolved: ResolvedInstance;
  service: ResolvedService;
  spec: instance.InstanceSpec;
  hostKey: keypair.KeypairSpec;
  overlay: OverlaySpec;
  seed: seed.SeedSpec;
}

export interface Desired {
  project: ResolvedProject;
  layout: ProjectLayout;
  keypair: keypair.KeypairSpec;
  images: Map<string, image.ImageSpec>;
  volumes: volume.VolumeSpec[];
  instances: DesiredInstance[];
}

const placeholder: KeyPair = { privateKey: '', publicKey: '' };

export function desiredState(project: ResolvedProject, layout: ProjectLayout, keys: Keys): Desired {
  const images = image.desired(project, layout.stateDir);
  const services = new Map(project.services.map((s) => [s.name, s]));
  const instances = project.instances.map((resolved): DesiredInstance => {
    const service = services.get(resolved.service)!;
    const files = layout.instance(resolved.name);
    const base = images.get(service.name)!;
    const hostKey = keys.hosts[resolved.name] ?? placeholder;
    const seedSpec = seed.desired(
      project,
      service,
      resolved,
      { projectPublicKey: keys.project ?? '', hostKey },
      files.seed,
    );
    return {
      resolved,
      service,
      spec: instance.desired(service, resolved, base, seedSpec.identity),
      hostKey: hostKeySpec(resolved.name, files.hostKey),
      overlay: {
        instance: resolved.name,
        path: files.overlay,
        base,
        size: service.spec.vm.disk_size,
        baseRecord: files.diskBase,
        digestCache: layout.digestCache,
      },
      seed: seedSpec,
    };
  });
  return {
    project,
    layout,
    keypair: keypair.desired(layout),
    images,
    volumes: volume.desired(project, layout),
    instances,
  };
}

export const hostKeySpec = (name: string, dir: string): keypair.KeypairSpec => ({
  name: `${name} host key`,
  dir,
  comment: `holos host key ${name}`,
});
