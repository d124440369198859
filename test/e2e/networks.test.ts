// End to end, issue #19: named networks on real guests, and two projects of one name that
// never meet. Inside a network namespace made for the test:
//
// 1. A stack on two named networks (the "tiers" project): web (2 replicas) on front, api on
//    front and back, db on back with a static address and an alias. Each guest resolves and
//    reaches exactly the names of the networks it shares: web knows api but not db; api reaches
//    db by its alias and gets db's own answer (its machine-id, over HTTP).
// 2. A second project of the same name, in another state dir, runs side by side: its db has the
//    same name, address and MAC as the first one's, and neither sees the other.
// 3. web 2 → 3: web-2 is created; web-0, web-1 and api-0 (who share front with it) learn its
//    name over SSH without a restart; db-0, on back only, is not touched.
//
// Six boots under TCG, four at once: a few minutes. Figures are diagnostics, never assertions.

import assert from 'node:assert/strict';
import type { InstanceStatus } from '../../src/access/status.js';
import type { Action } from '../../src/resources/kind.js';
import { e2eTest, netnsGate, runHolosIn, tempProject, withNetns, type TempProject } from './harness.js';

const tiers = (image: string, webReplicas: number) => `name: tiers
services:
  db:
    image: ${image}
    stop_grace_period: 5s
    networks:
      back: { ipv4_address: 10.20.0.10, aliases: [postgres] }
    cloud_init:
      runcmd:
        # Its own answer: the machine-id, unique to this guest.
        - mkdir -p /run/www && cp /etc/machine-id /run/www/id
        - systemd-run --unit=www python3 -m http.server 8000 --directory /run/www
  api:
    image: ${image}
    stop_grace_period: 5s
    networks: [front, back]
  web:
    image: ${image}
    replicas: ${webReplicas}
    stop_grace_period: 5s
    networks: [front]
networks:
  front: {}
  back:
    ipam: { config: [{ subnet: 10.20.0.0/24 }] }
`;

/** The other checkout: a project of the same name with its own db, same address, same MAC. */
const twin = (image: string) => `name: tiers
services:
  db:
    image: ${image}
    stop_grace_period: 5s
    networks:
      back: { ipv4_address: 10.20.0.10 }
networks:
  back:
    ipam: { config: [{ subnet: 10.20.0.0/24 }] }
`;

const fetchId = `python3 -c "import urllib.request as u; print(u.urlopen('http://postgres:8000/id', timeout=10).read().decode().strip())"`;

e2eTest(
  'networks: two named networks resolve and reach only what they share; a same-named project elsewhere is apart; web 2 → 3 updates its neighbours',
  async (t, env) => {
    if (!netnsGate(t)) return;
    const [one, two] = [await tempProject(t), await tempProject(t)];
    await one.write('holos.yaml', tiers(env.image, 2));
    await two.write('holos.yaml', twin(env.image));

    await withNetns(`holos-networks-${process.pid}`, async (ns) => {
      const holos = async (project: TempProject, ...args: string[]) => {
        const r = await runHolosIn(ns, args, {
          cwd: project.dir,
          env: { ...project.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' },
          timeoutMs: 15 * 60_000,
        });
        assert.equal(r.code, 0, `holos ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      /** A shell line in a guest; its exit status and output. */
      const inGuest = async (project: TempProject, instance: string, script: string) => {
        const r = await runHolosIn(ns, ['exec', '-w', '6m', instance, '--', 'sh', '-c', script], {
          cwd: project.dir,
          env: project.env,
          timeoutMs: 8 * 60_000,
        });
        return { code: r.code, out: r.stdout.trim(), err: r.stderr.trim() };
      };
      const ok = async (project: TempProject, instance: string, script: string) => {
        const r = await inGuest(project, instance, script);
        assert.equal(r.code, 0, `${instance}: ${script}: ${r.err}`);
        return r.out;
      };
      const fails = async (project: TempProject, instance: string, script: string, why: string) =>
        assert.notEqual((await inGuest(project, instance, script)).code, 0, `${instance}: ${why}`);
      const ps = async (project: TempProject) =>
        new Map(
          (
            JSON.parse(await holos(project, 'ps', '--format', 'json')) as { instances: InstanceStatus[] }
          ).instances.map((r) => [r.instance, r]),
        );
      const resolves = (project: TempProject, instance: string, name: string) =>
        ok(project, instance, `getent hosts ${name} | cut -d' ' -f1`);

      const started = Date.now();
      await Promise.all([holos(one, 'up', '--wait'), holos(two, 'up', '--wait')]);
      t.diagnostic(`5 guests up and ready: ${((Date.now() - started) / 1000).toFixed(0)}s`);

      // 1. What each guest sees.
      const rows = await ps(one);
      assert.deepEqual(rows.get('api-0')!.networks, { front: '10.10.0.2', back: '10.20.0.2' });
      assert.deepEqual(rows.get('db-0')!.networks, { back: '10.20.0.10' });
      assert.equal(await resolves(one, 'web-0', 'api'), '10.10.0.2');
      assert.equal(await resolves(one, 'web-0', 'web-1'), rows.get('web-1')!.networks.front);
      await fails(one, 'web-0', 'getent hosts db', 'web shares no network with db: its name is unknown');
      await fails(one, 'web-0', 'getent hosts postgres', "db's alias is back's only");
      await ok(one, 'web-0', 'ping -c 1 -W 5 api');
      await fails(one, 'web-0', 'ping -c 1 -W 2 10.20.0.10', 'web has no way onto back');
      assert.equal(await resolves(one, 'api-0', 'postgres'), '10.20.0.10');
      assert.equal(await resolves(one, 'api-0', 'web'), rows.get('web-0')!.networks.front);
      await fails(one, 'db-0', 'getent hosts web', 'db shares no network with web');
      const dbId = await ok(one, 'db-0', 'cat /etc/machine-id');

      // 2. The other project of the same name: its db has the same address (and MAC) on its own
      // segment. api-0 gets its own db's answer, and the twin reaches nothing of project one.
      const twinId = await ok(two, 'db-0', 'cat /etc/machine-id');
      assert.notEqual(twinId, dbId);
      assert.deepEqual((await ps(two)).get('db-0')!.networks, { back: '10.20.0.10' });
      for (let i = 0; i < 3; i++)
        assert.equal(await ok(one, 'api-0', fetchId), dbId, 'api-0 reaches its own db');
      await fails(two, 'db-0', 'ping -c 2 -W 2 10.20.0.2', "the twin's db cannot reach project one's api");
      await ok(one, 'api-0', 'ping -c 1 -W 5 10.20.0.10');

      // 3. web 2 → 3.
      const before = await ps(one);
      await one.write('holos.yaml', tiers(env.image, 3));
      const plan = JSON.parse(await holos(one, 'plan', '--json')) as { actions: Action[] };
      const instanceActions = plan.actions
        .filter((a) => a.kind === 'instance')
        .map((a) => `${a.verb} ${a.name}`)
        .sort();
      assert.deepEqual(instanceActions, ['create web-2', 'update api-0', 'update web-0', 'update web-1']);
      await holos(one, 'up', '--wait');
      const after = await ps(one);
      for (const name of ['api-0', 'db-0', 'web-0', 'web-1'])
        assert.equal(after.get(name)!.pid, before.get(name)!.pid, `${name} was not restarted`);
      const web2 = after.get('web-2')!.networks.front!;
      assert.equal(await resolves(one, 'web-0', 'web-2'), web2);
      assert.equal(await resolves(one, 'api-0', 'web-2'), web2);
      await ok(one, 'web-0', 'ping -c 1 -W 5 web-2');
      await fails(one, 'db-0', 'getent hosts web-2', 'db is not on front');

      await holos(two, 'down');
      await holos(one, 'down');
    });
  },
);
