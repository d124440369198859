import { constants } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { requireUefiFirmware } from '../qemu/firmware.js';
import { exists } from '../util/fs.js';
import type { Kind } from './kind.js';

// The UEFI variable store of an instance that boots with UEFI: its own copy of OVMF's
// template, made once and then kept (the boot entries the guest writes live there), also
// across a recreate. A part of the instance: made while its VM is down, before it starts.

export interface NvramSpec {
  instance: string;
  service: string;
  path: string;
}

export interface NvramObserved {
  exists: boolean;
}

export const nvram: Kind<'nvram', NvramSpec, NvramObserved> = {
  kind: 'nvram',
  part: true,

  desired({ project, layout }) {
    const uefi = new Set(project.services.filter((s) => s.uefi).map((s) => s.name));
    return new Map(
      project.instances
        .filter((i) => uefi.has(i.service))
        .map((i) => [
          i.name,
          { instance: i.name, service: i.service, path: layout.instance(i.name).uefiVars },
        ]),
    );
  },

  observe: async (_name, spec) => ({ exists: spec !== undefined && (await exists(spec.path)) }),

  diff(name, spec, observed, ctx) {
    if (!spec || observed.exists || ctx.targetOf(spec.service, name) !== 'running') return [];
    return [
      {
        kind: 'nvram',
        name,
        instance: name,
        service: spec.service,
        verb: 'create',
        cause: 'missing',
        reason: 'a UEFI variable store of its own',
      },
    ];
  },

  execute: {
    create: async ({ spec }) => {
      await mkdir(dirname(spec!.path), { recursive: true, mode: 0o700 });
      // COPYFILE_EXCL: a store that exists (a crash after the copy) is the instance's: kept.
      await copyFile(requireUefiFirmware().vars, spec!.path, constants.COPYFILE_EXCL).catch(
        (error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        },
      );
    },
  },
};
