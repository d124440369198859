import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';
import type { KubevirtFlags } from './kubevirt.js';
import type { MutateOptions } from './lifecycle.js';

// Every verb, as commander sees it: its arguments, options and help. What a verb does lives in
// the module of its group (compose.ts, lifecycle.ts, access.ts), loaded only when the verb
// runs, once: `holos --version`, `--help` and shell completion load none of them.

const compose = () => import('./compose.js');
const lifecycle = () => import('./lifecycle.js');
const access = () => import('./access.js');
const watching = () => import('./watch.js');
const imaging = () => import('./images.js');
const snapshotting = () => import('./snapshot.js');
const volumes = () => import('./volumes.js');
const kubevirt = () => import('./kubevirt.js');

const mutating = (command: Command) =>
  command
    .option('--dry-run', 'print the plan and change nothing')
    .option('--json', 'print events (or, with --dry-run, the plan) as JSON, one object per line')
    .option('--no-wait', 'fail at once if another holos is changing this project')
    .option('--lock-timeout <duration>', 'give up waiting for another holos after this long');

/** Compose's --pull, and the lock file's --locked: for the verbs that may create VMs. */
const pulling = (command: Command) =>
  command
    .option(
      '--pull <policy>',
      'missing: pull images not in the cache; always: also move to a newer upstream version; never: fail instead',
      'missing',
    )
    .option('--locked', 'every catalog or URL image must be pinned by holos.images.lock');

export function registerCommands(program: Command, globals: () => GlobalOptions): void {
  // Offline: the compose file and the files it names, never the state dir or the network.
  program
    .command('validate')
    .description('check the compose file and list every problem with its file:line:col')
    .option('-q, --quiet', 'print nothing; the exit status says whether the file is valid')
    .action(async (options: { quiet?: boolean }) => (await compose()).validate(globals(), options));

  program
    .command('config')
    .description('print the project as holos resolves it: defaults filled in, replicas expanded')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (options: { format: string }) => (await compose()).config(globals(), options));

  program
    .command('schema')
    .description('print the JSON Schema of holos.yaml (for editors and the YAML language server)')
    .action(async () => (await compose()).schema());

  // The reconciler: each verb names a target per service (reconcile/targets.ts).
  for (const name of ['up', 'apply'] as const) {
    mutating(
      pulling(program.command(name))
        .description(
          name === 'up'
            ? 'create and start every VM of the project, changing only what differs from the file'
            : 'the same as up: converge the host to the file',
        )
        .option('--timeout <duration>', 'give up waiting for healthchecks after this long')
        // Before mutating's --no-wait (the lock's): defined first, neither is the default.
        .option('--wait', "then wait until every VM is ready (cloud-init done); fail if one isn't")
        .option('--wait-timeout <duration>', 'with --wait: give up after this long')
        .option(
          '--take-over',
          "manage the project from this file although another compose file made it (its VMs, disks and volumes become this file's)",
        ),
    ).action(async (options: MutateOptions) => (await lifecycle()).mutate(globals(), name, [], options));
  }

  mutating(
    program
      .command('start')
      .argument('[service...]', 'services to start (default: all)')
      .description('start stopped VMs of existing instances; others are left alone'),
  ).action(async (named: string[], options: MutateOptions) =>
    (await lifecycle()).mutate(globals(), 'start', named, options),
  );

  mutating(
    program
      .command('stop')
      .argument('[service...]', 'services to stop (default: all)')
      .description('stop VMs gracefully (ACPI, then SIGTERM after stop_grace_period); disks are kept'),
  ).action(async (named: string[], options: MutateOptions) =>
    (await lifecycle()).mutate(globals(), 'stop', named, options),
  );

  mutating(
    program
      .command('down')
      .argument('[project]', 'a project in the state dir (default: the one of the compose file)')
      .option('-v, --volumes', "also delete the project's named volumes and keys: nothing of it is left")
      .description('stop and remove every VM of the project; named volumes and keys stay'),
  ).action(async (project: string | undefined, options: MutateOptions) =>
    (await lifecycle()).mutate(globals(), 'down', [], options, project),
  );

  pulling(program.command('plan'))
    .description('print what up would do, and change nothing')
    .option('--json', 'the plan as JSON')
    .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when there are changes')
    .action(async (options: { json?: boolean; detailedExitcode?: boolean; pull: string; locked?: boolean }) =>
      (await lifecycle()).plan(globals(), options),
    );

  // The image cache: shared by every project of the state dir.
  program
    .command('pull')
    .argument('[image...]', 'catalog names (debian:12) or URLs (default: the images of the compose file)')
    .description(
      'download images into the cache, or a newer version of them; verified against their published checksum',
    )
    .option('--json', 'print progress and results as JSON, one object per line')
    .action(async (refs: string[], options: { json?: boolean }) =>
      (await imaging()).pull(globals(), refs, options),
    );

  const images = program
    .command('images')
    .description('list the catalog and the cached images, with the instances whose disks are made on each')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { format: string }) => (await imaging()).list(globals(), options));
  images
    .command('rm')
    .argument('<image...>', 'an image (every version of it) or one version by its file name')
    .description('remove cached images; refused while an instance is made on one')
    .action(async (refs: string[]) => (await imaging()).remove(globals(), refs));
  images
    .command('prune')
    .description('remove every cached image version that no instance in the state dir is made on')
    .option('--dry-run', 'say what would be removed, remove nothing')
    .action(async (options: { dryRun?: boolean }) => (await imaging()).prune(globals(), options));
  images
    .command('verify')
    .argument('[image...]', 'images to check (default: everything cached)')
    .description('hash cached images again and compare them with the digests they were pulled with')
    .action(async (refs: string[]) => (await imaging()).verify(globals(), refs));
  images
    .command('lock')
    .description(
      'write holos.images.lock beside the compose file: each image pinned at the version the project uses',
    )
    .option('--json', 'print progress as JSON, one object per line')
    .action(async (options: { json?: boolean }) => (await imaging()).lock(globals(), options));

  program
    .command('watch')
    .argument('[service...]', 'services to keep converged (default: the whole project)')
    .description(
      'converge, then keep converging when the file changes or a VM stops; Ctrl-C leaves the VMs running',
    )
    .option('--resync <duration>', 'also converge this often, whatever happens', '30s')
    .option('--json', 'print events as JSON, one object per line')
    .action(async (named: string[], options: { resync: string; json?: boolean }) =>
      (await watching()).watchVerb(globals(), named, options),
    );

  program
    .command('ps')
    .description(
      'list the VMs of the project (of every project with --all, or when there is no compose file)',
    )
    .option('-a, --all', 'every project in the state dir')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { all?: boolean; format: string }) => (await lifecycle()).ps(globals(), options));

  program
    .command('inspect')
    .description(
      "one instance in full: state, phase and cloud-init's verdict, ports, disk and its backing chain, QEMU's command line, the spec it runs",
    )
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .option('--format <format>', 'text or json', 'text')
    .action(async (name: string, options: { format: string }) =>
      (await access()).inspect(globals(), name, options),
    );

  // Getting into VMs: they read the state dir and touch no VM's state.
  program
    .command('exec')
    .description(
      'run a command in an instance over SSH (no command: an interactive shell); its output and exit status pass through',
    )
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .argument(
      '[command...]',
      'the command and its arguments, after -- (each word is passed as it is, not through a shell)',
    )
    .option('-u, --user <user>', "login user (default: the service's cloud_init user, else the image's)")
    .option('-w, --wait <duration>', 'wait this long for sshd (0: do not wait)', '60s')
    .option('-t, --tty', 'give the command a pseudo-terminal (a shell gets one whenever stdin is a terminal)')
    .showHelpAfterError('(put the command after --, as in: holos exec web-0 -- ls -la)')
    .action(
      async (name: string, command: string[], options: { user?: string; wait: string; tty?: boolean }) =>
        (await access()).exec(globals(), name, command, options),
    );

  program
    .command('console')
    .description("attach to an instance's serial console; Ctrl-] detaches and leaves the VM running")
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .action(async (name: string) => (await access()).console(globals(), name));

  program
    .command('logs')
    .description(
      "print the serial console logs of services' replicas or of instances, each line prefixed with its instance",
    )
    .argument('[name...]', 'services (all their replicas) or instances (default: every instance)')
    .option('-f, --follow', 'keep printing new output, across reboots and new replicas, until Ctrl-C')
    .option('-n, --tail <lines>', 'only the last lines of each log (a number, or all)', 'all')
    .option(
      '-t, --timestamps',
      'with -f, prefix each new line with the time it arrived (the log itself has no times)',
    )
    .action(async (names: string[], options: { follow?: boolean; tail: string; timestamps?: boolean }) =>
      (await access()).logs(globals(), names, options),
    );

  program
    .command('version')
    .description("print holos's version (--version does too); with --json, node's and QEMU's as well")
    .option('--json', 'print them as JSON')
    .action(async (options: { json?: boolean }) => (await access()).version(options));
  program
    .command('completion')
    .description(
      'print a completion script: source <(holos completion bash); zsh alike; holos completion fish | source',
    )
    .argument('<shell>', 'bash, zsh or fish')
    .action(async (shell: string) => (await import('./completion.js')).printScript(shell));
  program
    .command('__complete', { hidden: true })
    .argument('[words...]')
    .action(async (words: string[]) => (await import('./completion.js')).complete(program, words, globals()));

  program
    .command('devices')
    .description(
      "the host's PCI devices by IOMMU group, with class, vendor and device, and driver: what devices: can pass to a VM",
    )
    .option(
      '--gpu',
      'display devices only, with what passthrough needs (vfio-pci, the rest of the group, a ROM)',
    )
    .option('--json', 'print the devices as JSON')
    .action(async (options: { gpu?: boolean; json?: boolean }) => (await access()).devices(options));
  program
    .command('doctor')
    .description(
      'check what holos needs of this host (QEMU, KVM, OVMF, loopback, the state dir, disk space, capacity against the project here), each with the fix; exit 1 when something needed is missing',
    )
    .option('--json', 'print the checks as JSON')
    .action(async (options: { json?: boolean }) => (await access()).doctor(globals(), options));

  program
    .command('ssh-config')
    .description(
      "print an OpenSSH Host block per instance (for ~/.ssh/config: ssh web-0, scp, editors' remote-SSH); writes the known_hosts file it names",
    )
    .action(async () => (await access()).sshConfig(globals()));

  const exporting = program
    .command('export')
    .description(
      "write an instance's root disk, flattened, as a standalone qcow2 image (usable as image: elsewhere); export kubevirt: the project as KubeVirt manifests",
    )
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .argument('<file>', 'the qcow2 to write (never overwritten)')
    .option('--snapshot <name>', 'the disk as it was at this snapshot (else as it is now: stop the VM first)')
    .action(async (name: string, file: string, options: { snapshot?: string }) =>
      (await snapshotting()).exportDisk(globals(), name, file, options),
    );
  // A subcommand beside the disk export's arguments: commander tries it first, so a service
  // named kubevirt has its disk exported by instance name (kubevirt-0).
  exporting
    .command('kubevirt')
    .description(
      'the project as KubeVirt and CDI manifests (VirtualMachines, DataVolumes, Services, Secrets) for kubectl apply; what has no cluster equivalent is one warning each on stderr',
    )
    .option(
      '-o, --output <dir>',
      'a directory for one file per manifest, or - for one YAML stream on stdout',
      '-',
    )
    .option('--namespace <ns>', "the namespace of every manifest (else kubectl's current one)")
    .option('--storage-class <sc>', 'the storage class of every DataVolume (else the cluster default)')
    .option(
      '--service-type <type>',
      'the type of the Services for ports: ClusterIP, NodePort or LoadBalancer',
      'ClusterIP',
    )
    .action(async (options: KubevirtFlags) => (await kubevirt()).kubevirt(globals(), options));

  // Named volumes, for people: what they hold and who uses them; rm refuses one in use.
  const volumeVerbs = program
    .command('volumes')
    .description('the named volumes: ls (the default), inspect, rm, export, import');
  volumeVerbs
    .command('ls', { isDefault: true })
    .description(
      "the project's volumes (every project's with --all): size, use on disk, instances, snapshots",
    )
    .option('-a, --all', 'every project in the state dir')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { all?: boolean; format: string }) => (await volumes()).list(globals(), options));
  volumeVerbs
    .command('inspect')
    .description('one volume in full, as JSON')
    .argument('<volume>', 'the volume')
    .action(async (name: string) => (await volumes()).inspectVolume(globals(), name));
  volumeVerbs
    .command('rm')
    .description('remove volumes; refused for one an instance uses (names it)')
    .argument('<volume...>', 'the volumes')
    .action(async (names: string[]) => (await volumes()).remove(globals(), names));
  volumeVerbs
    .command('export')
    .description('write a standalone qcow2 copy of a volume (not while a VM writes it)')
    .argument('<volume>', 'the volume')
    .argument('<file>', 'the qcow2 to write (never overwritten)')
    .action(async (name: string, file: string) => (await volumes()).exportVolume(globals(), name, file));
  volumeVerbs
    .command('import')
    .description('make a disk file (qcow2 or raw) a new named volume of the project, as a copy')
    .argument('<file>', 'the disk file')
    .argument('<volume>', 'the new volume')
    .action(async (file: string, name: string) => (await volumes()).importVolume(globals(), file, name));

  // Snapshots: every disk an instance writes, at one moment (with its RAM when it runs).
  const snapshots = program
    .command('snapshot')
    .description(
      'snapshots of an instance, of a service, or of the whole stack at one moment (--all): save, ls, restore, rm',
    );
  const target = ['[target]', 'an instance (web-0) or a service (all its instances)'] as const;
  // With --all, the one argument given is the snapshot's name.
  const run =
    (op: 'save' | 'restore' | 'rm') =>
    async (t: string | undefined, name: string | undefined, options: { all?: boolean; yes?: boolean }) =>
      (await snapshotting()).snapshot(
        globals(),
        op,
        options.all ? undefined : t,
        options.all ? (name ?? t) : name,
        options,
      );
  snapshots
    .command('save')
    .description("take a snapshot: a running VM's disks and RAM, a stopped one's disks")
    .argument(...target)
    .argument('[name]', 'the snapshot (default: snap-<UTC time>)')
    .option('--all', 'every instance of the project, at one moment')
    .action(run('save'));
  snapshots
    .command('ls')
    .description('list the snapshots (of every instance without a target)')
    .argument(...target)
    .option('--format <format>', 'table or json', 'table')
    .action(async (t: string | undefined, options: { format: string }) =>
      (await snapshotting()).snapshot(globals(), 'ls', t, undefined, options),
    );
  snapshots
    .command('restore')
    .description('bring instances back to a snapshot; what they got since is lost (asks, or --yes)')
    .argument(...target)
    .argument('[name]', 'the snapshot')
    .option('--all', 'every instance of the project, at one moment')
    .option('-y, --yes', 'do not ask')
    .action(run('restore'));
  snapshots
    .command('rm')
    .description('remove a snapshot from the disks of the instances')
    .argument(...target)
    .argument('[name]', 'the snapshot')
    .option('--all', 'every instance of the project')
    .action(run('rm'));
}
