import type { ResolvedInstance, ResolvedProject, ResolvedService } from '../compose/resolve.js';
import type { ImageInputs, ImageSpec } from '../resources/image.js';
import type { InstanceSpec } from '../resources/instance.js';
import { projectKeySpec, hostKeyName, type KeypairSpec } from '../resources/keypair.js';
import type { Keys, ResourceKind, SpecOf } from '../resources/kind.js';
import type { OverlaySpec } from '../resources/overlay.js';
import { kinds } from '../resources/registry.js';
import type { SeedSpec } from '../resources/seed.js';
import type { VolumeSpec } from '../resources/volume.js';
import type { ProjectLayout } from '../state/layout.js';

export type { Keys } from '../resources/kind.js';

// Desired state: every resource the project needs, by kind, from the resolved project and the
// keys that exist (a seed whose keys are still to be made is rendered when it is written). Pure.

export type Specs = { [K in ResourceKind]: Map<string, SpecOf<K>> };

/** The specs of one instance, side by side (for people and tests reading a plan). */
export interface DesiredInstance {
  resolved: ResolvedInstance;
  service: ResolvedService;
  spec: InstanceSpec;
  hostKey: KeypairSpec;
  overlay: OverlaySpec;
  seed: SeedSpec;
}

export interface Desired {
  project: ResolvedProject;
  layout: ProjectLayout;
  specs: Specs;
  keypair: KeypairSpec;
  images: Map<string, ImageSpec>;
  volumes: VolumeSpec[];
  instances: DesiredInstance[];
}

export function desiredState(
  project: ResolvedProject,
  layout: ProjectLayout,
  keys: Keys,
  images?: ImageInputs,
): Desired {
  const input = { project, layout, keys, ...(images && { images }) };
  const specs = Object.fromEntries(
    Object.values(kinds).map((kind) => [kind.kind, kind.desired(input)]),
  ) as unknown as Specs;
  const services = new Map(project.services.map((s) => [s.name, s]));
  return {
    project,
    layout,
    specs,
    keypair: projectKeySpec(layout),
    images: specs.image,
    volumes: [...specs.volume.values()],
    instances: project.instances.map((resolved) => ({
      resolved,
      service: services.get(resolved.service)!,
      spec: specs.instance.get(resolved.name)!,
      hostKey: specs.keypair.get(hostKeyName(resolved.name))!,
      overlay: specs.overlay.get(resolved.name)!,
      seed: specs.seed.get(resolved.name)!,
    })),
  };
}
