import { constants } from 'node:fs';
import { access, readFile, stat, statfs } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import type { ResolvedProject } from '../compose/resolve.js';
import { formatBytes } from '../compose/units.js';
import { chooseAccelerator } from '../qemu/accel.js';
import { programVersion } from '../qemu/binaries.js';
import { findUefiFirmware } from '../qemu/firmware.js';
import { imagesDir } from '../images/store.js';

// holos doctor: every host requirement with a verdict and the fix. Each check reads the host
// and says what it found; `verdicts` (pure) turns the readings into lines. A check the project
// in the current directory needs fails; one it does not need only warns.

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  verdict: Verdict;
  /** What was found. */
  detail: string;
  /** What to do, when it is not ok. */
  fix?: string;
}

/** What the project asks of the host; absent without a compose file here. */
export interface Needs {
  project: string;
  uefi: boolean;
  /** Every instance's memory, in MiB. */
  memoryMb: number;
  /** The largest vcpu count of one instance. */
  vcpus: number;
  instances: number;
}

export const needsOf = (project: ResolvedProject): Needs => {
  const specs = project.instances.map((i) => project.services.find((s) => s.name === i.service)!);
  return {
    project: project.name,
    uefi: project.services.some((s) => s.uefi),
    memoryMb: specs.reduce((sum, s) => sum + s.spec.vm.memory_mb, 0),
    vcpus: Math.max(0, ...specs.map((s) => s.spec.vm.vcpu)),
    instances: project.instances.length,
  };
};

/** Bytes free where `path` (or its nearest existing parent) lives. */
async function freeBytes(path: string): Promise<{ at: string; free: number }> {
  for (let at = path; ; at = dirname(at)) {
    try {
      const fs = await statfs(at);
      return { at, free: fs.bavail * fs.bsize };
    } catch {
      if (dirname(at) === at) throw new Error(`no file system holds ${path}`);
    }
  }
}

/** The memory (bytes) and CPUs (a fraction) this process's cgroup v2 allows; undefined for none. */
async function cgroupLimits(): Promise<{ memory?: number; cpus?: number }> {
  const own = (await readFile('/proc/self/cgroup', 'utf8').catch(() => '')).match(/^0::(.*)$/m)?.[1];
  if (own === undefined) return {};
  const dir = `/sys/fs/cgroup${own === '/' ? '' : own}`;
  const memory = (await readFile(`${dir}/memory.max`, 'utf8').catch(() => 'max')).trim();
  const [quota, period] = (await readFile(`${dir}/cpu.max`, 'utf8').catch(() => 'max')).trim().split(' ');
  return {
    ...(memory !== 'max' && Number.isFinite(Number(memory)) && { memory: Number(memory) }),
    ...(quota !== 'max' &&
      quota !== undefined &&
      period !== undefined && { cpus: Number(quota) / Number(period) }),
  };
}

const memAvailable = async () => {
  const kib = (await readFile('/proc/meminfo', 'utf8').catch(() => '')).match(
    /^MemAvailable:\s+(\d+) kB$/m,
  )?.[1];
  return kib === undefined ? undefined : Number(kib) * 1024;
};

export interface DoctorInput {
  stateDir: string;
  qemuSystem: string;
  qemuImg: string;
  needs?: Needs;
}

/** Reads the host: one check per requirement, in the order a person would fix them. */
export async function diagnose(input: DoctorInput): Promise<Check[]> {
  const { needs } = input;
  const checks: Check[] = [];
  const fixQemu =
    'install QEMU (Debian: apt install qemu-system-x86 qemu-utils), or set HOLOS_QEMU_SYSTEM / HOLOS_QEMU_IMG';

  let qemuFound = false;
  for (const [name, program] of [
    ['qemu', input.qemuSystem],
    ['qemu-img', input.qemuImg],
  ] as const) {
    const found = await programVersion(program);
    if (name === 'qemu') qemuFound = 'version' in found;
    checks.push(
      'version' in found
        ? { name, verdict: 'ok', detail: `${program}: ${found.version}` }
        : { name, verdict: 'fail', detail: `${program}: ${found.missing}`, fix: fixQemu },
    );
  }

  const kvmDevice = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => undefined,
    (error: NodeJS.ErrnoException) =>
      error.code === 'ENOENT' ? 'there is no /dev/kvm' : `/dev/kvm: ${error.code}`,
  );
  if (kvmDevice)
    checks.push({
      name: 'kvm',
      verdict: 'warn',
      detail: `${kvmDevice}; guests run under TCG emulation, many times slower`,
      fix: kvmDevice.includes('EACCES')
        ? 'add yourself to the kvm group (sudo usermod -aG kvm $USER), then log in again'
        : 'enable virtualization in the firmware, load kvm_intel or kvm_amd, or on a VM enable nested virtualization',
    });
  else if (!qemuFound) checks.push({ name: 'kvm', verdict: 'warn', detail: 'not probed: QEMU is missing' });
  else {
    let why: string | undefined;
    const accel = await chooseAccelerator(input.qemuSystem, input.stateDir, (message) => (why = message));
    checks.push(
      accel.kind === 'kvm'
        ? {
            name: 'kvm',
            verdict: 'ok',
            detail: process.env.HOLOS_ACCEL === 'kvm' ? 'KVM (HOLOS_ACCEL=kvm)' : 'KVM boots a guest kernel',
          }
        : {
            name: 'kvm',
            verdict: 'warn',
            detail:
              process.env.HOLOS_ACCEL === 'tcg'
                ? 'TCG (HOLOS_ACCEL=tcg)'
                : `/dev/kvm is there, but ${why?.replace(/^KVM is not usable here \((.*)\);.*$/, '$1') ?? 'it did not boot a kernel'}; guests run under TCG`,
            fix: `the answer is cached in ${input.stateDir}/accel.json until QEMU or the kernel changes; HOLOS_ACCEL=kvm forces KVM`,
          },
    );
  }

  const firmware = findUefiFirmware();
  checks.push(
    firmware
      ? { name: 'ovmf', verdict: 'ok', detail: firmware.code }
      : {
          name: 'ovmf',
          verdict: needs?.uefi ? 'fail' : 'warn',
          detail: `no OVMF firmware${needs?.uefi ? `; project ${needs.project} has a service with uefi: true` : ' (needed only for uefi: true)'}`,
          fix: 'install OVMF (Debian: apt install ovmf), or set HOLOS_OVMF_CODE and HOLOS_OVMF_VARS',
        },
  );

  const loopback = await new Promise<string | undefined>((resolve) => {
    const server = createServer();
    server.once('error', (error) => resolve(error.message));
    server.listen(0, '127.0.0.1', () => server.close(() => resolve(undefined)));
  });
  checks.push(
    loopback
      ? {
          name: 'loopback',
          verdict: 'fail',
          detail: `cannot listen on 127.0.0.1: ${loopback}`,
          fix: 'bring up the loopback interface (ip link set lo up); holos forwards ports and runs its network segments there',
        }
      : { name: 'loopback', verdict: 'ok', detail: '127.0.0.1 takes listeners (ports, network segments)' },
  );

  const state = await stat(input.stateDir).catch(() => undefined);
  const uid = process.getuid?.();
  if (!state)
    checks.push({
      name: 'state dir',
      verdict: 'ok',
      detail: `${input.stateDir}: made on first use, mode 0700`,
    });
  else if (uid !== undefined && state.uid !== uid)
    checks.push({
      name: 'state dir',
      verdict: 'fail',
      detail: `${input.stateDir} belongs to uid ${state.uid}, not you (${uid})`,
      fix: `chown -R ${uid} ${input.stateDir}, or point --state-dir elsewhere`,
    });
  else if ((state.mode & 0o077) !== 0)
    checks.push({
      name: 'state dir',
      verdict: 'fail',
      detail: `${input.stateDir} is mode ${(state.mode & 0o777).toString(8)}: other users can reach keys and sockets`,
      fix: `chmod 700 ${input.stateDir}`,
    });
  else checks.push({ name: 'state dir', verdict: 'ok', detail: `${input.stateDir}: yours, mode 0700` });

  const disk = await freeBytes(imagesDir(input.stateDir));
  const low = 5 * 2 ** 30;
  checks.push({
    name: 'disk',
    verdict: disk.free < 2 ** 30 ? 'fail' : disk.free < low ? 'warn' : 'ok',
    detail: `${formatBytes(disk.free)} free at ${disk.at} (the image cache and the disks)`,
    ...(disk.free < low && { fix: 'free some space, or move the state dir (--state-dir, $HOLOS_STATE_DIR)' }),
  });

  const limits = await cgroupLimits();
  const available = await memAvailable();
  const cpus = Math.min(availableParallelism(), limits.cpus ?? Infinity);
  if (!needs) {
    checks.push({
      name: 'capacity',
      verdict: 'ok',
      detail: `${cpus} CPUs${available !== undefined ? `, ${formatBytes(available)} of memory available` : ''}${limits.memory !== undefined ? `, a cgroup limit of ${formatBytes(limits.memory)}` : ''} (no holos.yaml here to compare with)`,
    });
  } else {
    const asked = needs.memoryMb * 2 ** 20;
    const over = limits.memory !== undefined && asked > limits.memory;
    const tight = available !== undefined && asked > available;
    const cpu = needs.vcpus > cpus;
    checks.push({
      name: 'capacity',
      verdict: over ? 'fail' : tight || cpu ? 'warn' : 'ok',
      detail: [
        `project ${needs.project}: ${needs.instances} VMs ask for ${formatBytes(asked)} of memory`,
        over
          ? `this cgroup allows ${formatBytes(limits.memory!)}`
          : available !== undefined
            ? `${formatBytes(available)} is available`
            : undefined,
        `its largest VM has ${needs.vcpus} vCPUs of ${cpus} here`,
      ]
        .filter(Boolean)
        .join('; '),
      ...((over || tight || cpu) && {
        fix: over
          ? 'raise the cgroup memory limit (systemd: MemoryMax=), or give the VMs less (vm.memory_mb)'
          : tight
            ? 'the host may swap or kill a VM: give the VMs less memory (vm.memory_mb) or start fewer'
            : 'a VM with more vCPUs than the host has runs, slowly: lower vm.vcpu',
      }),
    });
  }
  return checks;
}

/** `ok   qemu   /usr/bin/qemu-system-x86_64: QEMU emulator version 7.2.0`, then the fix indented. */
export function formatChecks(checks: readonly Check[]): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map(
      (c) =>
        `${c.verdict.padEnd(4)} ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n${' '.repeat(width + 7)}fix: ${c.fix}` : ''}`,
    )
    .join('\n');
}

/** 1 when something the project needs is missing. */
export const exitCodeOf = (checks: readonly Check[]) => (checks.some((c) => c.verdict === 'fail') ? 1 : 0);
