import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { escapeOption, type Accelerator } from './argv.js';
import { findUefiFirmware } from './firmware.js';

// KVM is used where it really boots guests. /dev/kvm existing is not enough: on some nested
// hosts KVM runs QEMU but a guest faults or hangs. So a real guest is started, the OVMF
// firmware (64-bit, paging, timers: what a kernel needs first), and it must reach its boot
// manager on the serial port in a few seconds. The answer is cached per QEMU binary and kernel.

export const tcg: Accelerator = { kind: 'tcg', hostCpu: 'max' };

export type ProbeResult = { usable: true; accel: Accelerator } | { usable: false; reason: string };

const probeTimeoutMs = 10_000;

/** Boots OVMF under KVM with this -cpu; resolves with what the serial port and stderr said. */
function bootFirmware(
  qemu: string,
  firmware: string,
  cpu: string,
): Promise<{ booted: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      qemu,
      ['-accel', 'kvm', '-cpu', cpu, '-machine', 'q35', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none',
        '-drive', `if=pflash,format=raw,readonly=on,file=${escapeOption(firmware)}`, '-serial', 'stdio', '-no-reboot'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ); // prettier-ignore
    let output = '';
    const finish = (booted: boolean) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ booted, output });
    };
    const timer = setTimeout(() => finish(false), probeTimeoutMs);
    const listen = (chunk: Buffer) => {
      output += chunk.toString('latin1');
      if (output.includes('BdsDxe')) finish(true);
      else if (output.includes('KVM internal error')) finish(false);
    };
    child.stdout.on('data', listen);
    child.stderr.on('data', listen);
    child.on('error', (error) => {
      output += error.message;
      finish(false);
    });
    child.on('exit', () => finish(output.includes('BdsDxe')));
  });
}

function kvmDeviceProblem(): string | undefined {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT'
      ? '/dev/kvm does not exist'
      : '/dev/kvm is not accessible (add your user to the kvm group)';
  }
}

/** Whether KVM really runs a guest here, and which -cpu stands for `host`. */
export async function probeKvm(qemu: string): Promise<ProbeResult> {
  const problem = kvmDeviceProblem();
  if (problem) return { usable: false, reason: problem };
  const firmware = findUefiFirmware();
  // Without OVMF there is no guest to try; trust the device, which is right on most hosts.
  if (!firmware) return { usable: true, accel: { kind: 'kvm', hostCpu: 'host' } };
  let last = '';
  // Some nested hosts reject an MSR that `-cpu host` passes through (arch-capabilities).
  for (const cpu of ['host', 'host,-arch-capabilities']) {
    const { booted, output } = await bootFirmware(qemu, firmware.code, cpu);
    if (booted) return { usable: true, accel: { kind: 'kvm', hostCpu: cpu } };
    last = output.includes('KVM internal error')
      ? 'a test guest stopped with "KVM internal error"'
      : output.trim().split('\n')[0] || 'a test guest did not start within 10s';
    if (!/MSR/i.test(output)) break;
  }
  return { usable: false, reason: last };
}

interface CachedProbe {
  key: string;
  result: ProbeResult;
}

async function cacheKey(qemu: string): Promise<string> {
  const info = await stat(qemu).catch(() => undefined);
  return `${qemu}:${info?.mtimeMs ?? 0}:${release()}`;
}

/**
 * The accelerator for this host: `$HOLOS_ACCEL` (kvm|tcg) if set, else the cached or a fresh
 * probe. `warn` is told once why a probe fell back to TCG.
 */
export async function chooseAccelerator(
  qemu: string,
  stateDir: string,
  warn: (message: string) => void,
): Promise<Accelerator> {
  const forced = process.env.HOLOS_ACCEL;
  if (forced === 'tcg') return tcg;
  if (forced === 'kvm') return { kind: 'kvm', hostCpu: 'host' };
  if (forced) throw new UserError(`HOLOS_ACCEL=${forced}: use kvm or tcg`);
  const file = join(stateDir, 'accel.json');
  const key = await cacheKey(qemu);
  const cached = await readFile(file, 'utf8')
    .then((text) => JSON.parse(text) as CachedProbe)
    .catch(() => undefined);
  let result = cached?.key === key ? cached.result : undefined;
  if (!result) {
    result = await probeKvm(qemu);
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(file, JSON.stringify({ key, result } satisfies CachedProbe), { mode: 0o600 });
  }
  if (result.usable) return result.accel;
  warn(
    `KVM is not usable here (${result.reason}); guests run under TCG emulation, which is much slower. HOLOS_ACCEL=kvm|tcg overrides.`,
  );
  return tcg;
}
