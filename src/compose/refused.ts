// Compose keys holos refuses with a reason instead of "unknown key" (compose/issues.ts).

/**
 * Compose service keys that mean something only for a container, each refused with why (not
 * "unknown key"): a VM has its own kernel, init and disks. Keys compose has that holos will map
 * (issue #15) say what to use meanwhile.
 */
export const refusedServiceKeys: Record<string, string> = {
  ...Object.fromEntries(
    ['cap_add', 'cap_drop'].map((k) => [k, 'is a container capability; a VM has its own kernel']),
  ),
  privileged: "lifts a container's confinement; a VM's root is root in its own kernel already",
  security_opt: "sets a container's seccomp or AppArmor profile; a VM is confined by its hypervisor",
  ...Object.fromEntries(
    ['pid', 'ipc', 'uts', 'userns_mode', 'cgroup', 'cgroup_parent', 'cgroupns_mode'].map((k) => [
      k,
      'shares a host namespace or cgroup with a container; a VM has its own kernel',
    ]),
  ),
  ...Object.fromEntries(
    [
      'shm_size',
      'ulimits',
      'sysctls',
      'oom_kill_disable',
      'oom_score_adj',
      'pids_limit',
      'mem_swappiness',
      'memswap_limit',
      'cpu_shares',
      'cpuset',
      'cpu_quota',
      'cpu_period',
      'blkio_config',
      'device_cgroup_rules',
    ].map((k) => [
      k,
      "tunes a container's cgroup; size the VM with vm: (vcpu, memory_mb) and tune the guest in cloud_init",
    ]),
  ),
  network_mode: "puts a container in another's network namespace; a VM joins networks: instead",
  links: 'links containers (legacy); VMs on a shared network reach each other by name',
  external_links: 'links containers (legacy); VMs on a shared network reach each other by name',
  container_name: "names a container; a VM's name is <service>-<replica>",
  read_only:
    "makes a container's root file system read-only; a VM's root disk is its own (mount volumes :ro)",
  tmpfs: 'mounts a tmpfs in a container; mount one in the guest with cloud_init (bootcmd)',
  volumes_from: "mounts another container's volumes; name the volumes under volumes: instead",
  init: 'runs an init in a container; a VM boots its own (systemd)',
  stdin_open: "keeps a container's stdin open; use holos console or holos exec",
  tty: 'gives a container a terminal; use holos console or holos exec -t',
  runtime: 'chooses a container runtime; holos runs QEMU',
  isolation: 'chooses a container isolation; a VM is isolated by its hypervisor',
  platform: 'chooses a container platform; holos runs x86_64 guests (vm.machine, vm.cpu_model)',
  logging: "sets a container's log driver; holos logs reads the VM's serial console",
  stop_signal: 'stops a container with a signal; a VM gets an ACPI power-off, then stop_grace_period',
  pull_policy: 'is a container image pull policy; use holos up --pull missing|always|never',
  build: 'builds a container image; a VM is provisioned from dockerfile: instead',
  expose:
    'opens a container port to linked containers; on a shared network every guest port is reachable (ports: publishes one on the host)',
  ...Object.fromEntries(
    ['cpu_count', 'cpu_percent', 'cpu_rt_runtime', 'cpu_rt_period', 'mem_reservation', 'storage_opt'].map(
      (k) => [
        k,
        "tunes a container's cgroup or storage driver; size the VM with vm: (vcpu, memory_mb, disk_size)",
      ],
    ),
  ),
  ...Object.fromEntries(
    ['dns', 'dns_search', 'dns_opt'].map((k) => [
      k,
      "sets a container's resolver; a guest's comes from its network (write /etc/resolv.conf with cloud_init to change it)",
    ]),
  ),
  domainname: "sets a container's NIS domain; set the guest's with cloud_init (bootcmd)",
  mac_address: "sets a container's MAC; holos derives each NIC's MAC from the project and instance names",
  group_add: "adds groups to a container's process; add the user to groups with cloud_init",
  gpus: 'gives a container GPUs through its runtime; pass a GPU to a VM with devices: (VFIO)',
  secrets:
    'mounts compose secrets in a container; write the file with cloud_init.write_files or share it read-only (volumes: ./dir:/target:ro)',
  configs:
    'mounts compose configs in a container; write the file with cloud_init.write_files or share it read-only (volumes: ./dir:/target:ro)',
  credential_spec: 'configures a Windows container account; holos runs Linux guests',
  extends: 'is not supported; share blocks with YAML anchors (x-common: &c, <<: *c) or an override file (-f)',
  annotations: 'annotates a container for its runtime; use labels: for metadata',
  attach: "attaches compose's output to a container's; use holos logs or holos console",
  post_start: 'runs a command in a started container; run it in the guest with cloud_init (runcmd)',
  pre_stop: 'runs a command before a container stops; add a systemd unit with ExecStop in the guest',
  develop: "is compose watch's file sync; share the directory with a bind mount (volumes: ./dir:/target)",
  label_file: 'reads container labels from a file; write them under labels:',
  models: 'attaches AI models to a container; holos runs VMs',
  provider: 'delegates a service to a compose provider plugin; holos runs only VMs',
  use_api_socket: 'gives a container the Docker API socket; holos runs VMs',
};

/** Top-level compose keys that mean nothing for a stack of VMs, refused with why. */
export const refusedTopLevelKeys: Record<string, string> = {
  secrets: 'declares compose secrets for containers; write files with cloud_init.write_files',
  configs: 'declares compose configs for containers; write files with cloud_init.write_files',
  include:
    'is not supported yet; merge another file over this one with -f (or holos.override.yaml beside it)',
  models: 'declares AI models for containers; holos runs VMs',
};

const swarm = 'is a swarm setting for a cluster of hosts; holos runs a stack on one host';

/** compose's `deploy` keys that holos does not map (replicas, resources.limits and restart_policy it does). */
const refusedDeployKeys: Record<string, string> = {
  ...Object.fromEntries(
    ['mode', 'placement', 'update_config', 'rollback_config', 'endpoint_mode', 'labels'].map((k) => [
      k,
      swarm,
    ]),
  ),
};

/** The refused keys of the mapping at `path` (compose/issues.ts says their reason, not "unknown"). */
export function refusedKeysAt(path: readonly (string | number)[]): Record<string, string> {
  const key = path.slice(2).join('.');
  if (path.length === 0) return refusedTopLevelKeys;
  if (path[0] !== 'services' || path.length < 2) return {};
  if (path.length === 2) return refusedServiceKeys;
  if (key === 'deploy') return refusedDeployKeys;
  if (key === 'deploy.resources')
    return {
      reservations:
        "reserves a container's share of the host; a VM has its vm.vcpu and vm.memory_mb to itself",
    };
  if (key === 'deploy.resources.limits')
    return {
      pids: "limits a container's processes; a VM has its own kernel",
      devices: 'passes devices to a container; use devices: (VFIO)',
    };
  return {};
}
