import { accessSync, constants } from 'node:fs';
import { UserError } from '../errors.js';

/** An OVMF pair: the read-only code and the template of the per-instance variable store. */
export interface UefiFirmware {
  code: string;
  vars: string;
}

// Where distributions install OVMF: Debian/Ubuntu, Fedora, Arch, and QEMU's own share dir.
const searchPairs: [string, string][] = [
  ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd'],
  ['/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd'],
  ['/usr/share/edk2/ovmf/OVMF_CODE.fd', '/usr/share/edk2/ovmf/OVMF_VARS.fd'],
  ['/usr/share/edk2-ovmf/x64/OVMF_CODE.fd', '/usr/share/edk2-ovmf/x64/OVMF_VARS.fd'],
  ['/usr/share/edk2/x64/OVMF_CODE.4m.fd', '/usr/share/edk2/x64/OVMF_VARS.4m.fd'],
  ['/usr/share/qemu/OVMF_CODE.fd', '/usr/share/qemu/OVMF_VARS.fd'],
];

const readable = (path: string) => {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
};

/** `$HOLOS_OVMF_CODE` + `$HOLOS_OVMF_VARS`, else the first readable pair of the usual paths. */
export function findUefiFirmware(): UefiFirmware | undefined {
  const { HOLOS_OVMF_CODE: code, HOLOS_OVMF_VARS: vars } = process.env;
  if (code || vars) {
    if (!code || !vars) throw new UserError('set both HOLOS_OVMF_CODE and HOLOS_OVMF_VARS, or neither');
    for (const path of [code, vars])
      if (!readable(path)) throw new UserError(`OVMF firmware ${path} is not readable`);
    return { code, vars };
  }
  const found = searchPairs.find(([c, v]) => readable(c) && readable(v));
  return found && { code: found[0], vars: found[1] };
}

export function requireUefiFirmware(): UefiFirmware {
  const found = findUefiFirmware();
  if (found) return found;
  throw new UserError(
    'UEFI firmware (OVMF) not found; install it (Debian: apt install ovmf) or set HOLOS_OVMF_CODE and HOLOS_OVMF_VARS',
  );
}
