import { userMacOf } from '../compose/resolve.js';
import type { CloudInitVerdict } from '../observe/boot.js';
import type { Accelerator } from '../qemu/argv.js';
import type { InstanceSpec, NicSpec } from '../resources/instance.js';
import type { SshTarget } from '../ssh/exec.js';
import { readJson, writeAtomically } from '../util/fs.js';
import type { InstanceLayout } from './layout.js';

// The applied record of an instance (`applied.json`): what holos last started it with, so that
// a diff against the file says what an edit costs, and the facts QEMU was given (ports, keys).

export interface AppliedRecord {
  /**
   * 2 since the seed's identity is computed from its inputs. A record of 1 was written by
   * holos 0.1, whose `spec.seed` was a hash of the rendered seed: see instance.ts.
   */
  schema_version: 1 | 2;
  spec: InstanceSpec;
  state: 'running' | 'stopped';
  pid?: number;
  sshPort: number;
  /** Host port of each entry of spec.ports, in order (ephemeral ones as chosen). */
  hostPorts: number[];
  accel: Accelerator;
  hostPublicKey: string;
  /** The project's login key the guest was given (absent in records of holos 0.1). */
  projectPublicKey?: string;
  startedAt?: string;
  /**
   * The root disk's first boot (observe/boot.ts): pending until holos's line is in the serial
   * log after `serial_offset`, the log's size when the disk was made. Absent in records
   * written before holos tracked first boots: those disks count as booted.
   */
  first_boot?: FirstBoot;
  /** The serial log's size when this QEMU started: where the current boot's lines begin. */
  boot_offset?: number;
  /** The hosts table the running guest has (seed.ts: hostsDigest), so a changed one is pushed to it. */
  hosts?: string;
}

export interface FirstBoot {
  state: 'pending' | 'done';
  serial_offset: number;
  /** cloud-init's verdict, once the first boot is over and holos has read it. */
  verdict?: CloudInitVerdict;
}

/** The one NIC of records written before named networks: on the project's only network. */
interface LegacyNetwork {
  ip: string;
  mac: string;
  /** `switch` since the project's switch; absent (a multicast `group` and `port`) before. */
  segment?: 'switch';
}

/**
 * Reads the record, in today's shape: a record of holos before named networks has one
 * `network`, which is the default network's NIC (a /24, as it always was).
 */
export async function readApplied(layout: InstanceLayout): Promise<AppliedRecord | undefined> {
  const record = await readJson<AppliedRecord & { spec: { network?: LegacyNetwork } }>(layout.applied);
  if (!record?.spec.network) return record;
  const { network: legacy, ...spec } = record.spec;
  const nic: NicSpec = {
    driver: legacy.segment === 'switch' ? 'switch' : 'multicast',
    mac: legacy.mac,
    ip: legacy.ip,
    prefix: 24,
  };
  return { ...record, spec: { ...spec, networks: { default: nic }, uplink_mac: userMacOf(legacy.mac) } };
}

export const writeApplied = (layout: InstanceLayout, record: AppliedRecord) =>
  writeAtomically(layout.applied, `${JSON.stringify(record, null, 2)}\n`);

/** Where and how to SSH into the instance a record describes: its forwarded port, the pinned host key. */
export const sshTargetOf = (applied: AppliedRecord, privateKey: string, user?: string): SshTarget => ({
  port: applied.sshPort,
  username: user ?? applied.spec.user,
  privateKey,
  hostPublicKey: applied.hostPublicKey,
});
