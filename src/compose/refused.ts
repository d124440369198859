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
};
