// The compose file of the stack e2e (stack.test.ts), by shape: its scenarios edit the shape,
// and the KubeVirt export's golden file (test/kubevirt.test.ts) is this stack's first shape.

export const project = 'stack';

export interface StackShape {
  webMemory: number;
  webReplicas: number;
  /** A runcmd line more for web: a different seed, so a new root disk. */
  webVersion?: string;
}

export const initialShape: StackShape = { webMemory: 512, webReplicas: 2 };

export function stackYaml(image: string, shape: StackShape): string {
  const q = (text: string) => JSON.stringify(text);
  const webRuncmd = [
    'mkdir -p /srv/www && hostname > /srv/www/index.html',
    ...(shape.webVersion ? [`echo ${shape.webVersion} > /srv/www/version`] : []),
    'systemd-run --unit=web-http python3 -m http.server 8000 --directory /srv/www',
  ];
  return [
    `name: ${project}`,
    'services:',
    '  db:',
    `    image: ${q(image)}`,
    '    vm:',
    '      memory_mb: 512',
    '    volumes:',
    '      - data:/data',
    '    healthcheck:',
    '      test: test -f /var/lib/cloud/instance/boot-finished',
    '      interval: 5s',
    '      start_period: 5m',
    '    cloud_init:',
    '      runcmd:',
    `        - ${q('systemd-run --unit=db-http python3 -m http.server 8000 --directory /data')}`,
    '  web:',
    `    image: ${q(image)}`,
    `    replicas: ${shape.webReplicas}`,
    '    depends_on: [db]',
    '    ports:',
    '      - "8080:8000"',
    '    volumes:',
    '      - ./share:/mnt/share:ro',
    // 20s, not less: a booted guest's ACPI power-off took over 10s on a loaded 2-core host.
    '    stop_grace_period: 20s',
    '    vm:',
    `      memory_mb: ${shape.webMemory}`,
    '    cloud_init:',
    '      runcmd:',
    ...webRuncmd.map((line) => `        - ${q(line)}`),
    'volumes:',
    '  data:',
    '    size: 1G',
    '',
  ].join('\n');
}
