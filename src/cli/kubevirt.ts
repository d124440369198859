import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { activeServicesOf } from '../compose/profiles.js';
import { exportKubevirt, type Manifest, type ServiceType } from '../export/kubevirt.js';
import { UserError } from '../errors.js';
import { hostKeySpec, projectKeySpec, read as readKeypair } from '../resources/keypair.js';
import { openProject } from '../session.js';
import { stateDirOf, type GlobalOptions } from './context.js';

// `holos export kubevirt`: the project as KubeVirt manifests (export/kubevirt.ts), with the keys
// this host made for it. It reads the state dir and changes nothing.

export interface KubevirtFlags {
  output: string;
  namespace?: string;
  storageClass?: string;
  serviceType: string;
}

const serviceTypes: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer'];
/** DNS-1123 labels, as Kubernetes takes for namespaces. */
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The documents as one YAML stream: `---` between documents, a note as a comment above its own. */
export const toYaml = (documents: readonly Manifest[], notes: ReadonlyMap<Manifest, string> = new Map()) =>
  documents
    .map((doc) => {
      const note = notes.get(doc);
      return `---\n${note !== undefined ? `# ${note}\n` : ''}${stringify(doc, { lineWidth: 0 })}`;
    })
    .join('');

/** One file per document: `<kind>-<name>.yaml`, as kubectl apply -f DIR reads them. */
const fileName = (doc: Manifest) =>
  `${doc.kind.toLowerCase()}-${(doc.metadata as { name: string }).name}.yaml`;

export async function kubevirt(globals: GlobalOptions, flags: KubevirtFlags): Promise<void> {
  const serviceType = serviceTypes.find((t) => t.toLowerCase() === flags.serviceType.toLowerCase());
  if (!serviceType)
    throw new UserError(`--service-type ${flags.serviceType}: use ${serviceTypes.join(', ')}`);
  for (const [flag, value] of [
    ['--namespace', flags.namespace],
    ['--storage-class', flags.storageClass],
  ] as const)
    if (value !== undefined && !dnsLabel.test(value))
      throw new UserError(
        `${flag} ${value}: a Kubernetes name is lowercase letters, digits and "-", at most 63 characters`,
      );
  const session = await openProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });
  const { layout } = session;
  // The services of the enabled profiles, as up would start them (compose's convert does too).
  const active = activeServicesOf(session.project);
  const project = {
    ...session.project,
    services: session.project.services.filter((s) => active.includes(s.name)),
    instances: session.project.instances.filter((i) => active.includes(i.service)),
  };
  const projectKey = await readKeypair(projectKeySpec(layout));
  const hostKeys = Object.fromEntries(
    (
      await Promise.all(
        project.instances.map(
          async (i) => [i.name, await readKeypair(hostKeySpec(layout, i.name, i.service))] as const,
        ),
      )
    ).filter((entry): entry is readonly [string, { privateKey: string; publicKey: string }] => !!entry[1]),
  );
  const { documents, notes, warnings } = exportKubevirt(
    project,
    { ...(projectKey && { projectPublicKey: projectKey.publicKey }), hostKeys },
    {
      serviceType,
      ...(flags.namespace !== undefined && { namespace: flags.namespace }),
      ...(flags.storageClass !== undefined && { storageClass: flags.storageClass }),
    },
  );
  for (const warning of warnings) process.stderr.write(`holos: ${warning}\n`);
  if (flags.output === '-') {
    process.stdout.write(toYaml(documents, notes));
    return;
  }
  // The Secrets hold the guests' private host keys: the directory and files are the owner's.
  await mkdir(flags.output, { recursive: true, mode: 0o700 });
  for (const doc of documents)
    await writeFile(join(flags.output, fileName(doc)), toYaml([doc], notes), { mode: 0o600 });
  process.stderr.write(
    `holos: wrote ${documents.length} manifests to ${flags.output}; kubectl apply -f ${flags.output}\n`,
  );
}
