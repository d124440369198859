import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMount } from '../src/compose/mounts.js';
import { formatPort, parsePort } from '../src/compose/ports.js';

/** The error text of a parse that must fail. */
const problem = (result: unknown) =>
  typeof result === 'string' ? result : `parsed: ${JSON.stringify(result)}`;

test('port forms: H:G, G, IP:H:G, with /tcp or /udp; loopback unless an address is given', () => {
  assert.deepEqual(parsePort('8080:80'), { hostIp: '127.0.0.1', host: 8080, guest: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('80'), { hostIp: '127.0.0.1', host: 0, guest: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('53:53/udp'), { hostIp: '127.0.0.1', host: 53, guest: 53, protocol: 'udp' });
  assert.deepEqual(parsePort('0.0.0.0:8443:443/tcp'), {
    hostIp: '0.0.0.0',
    host: 8443,
    guest: 443,
    protocol: 'tcp',
  });
  assert.equal(formatPort(parsePort('0.0.0.0:8443:443') as never), '0.0.0.0:8443:443/tcp');
  assert.equal(formatPort(parsePort('80') as never), '0:80/tcp');
});

test('bad ports say what is wrong', () => {
  assert.match(problem(parsePort('8080:http')), /guest port "http" is not a number/);
  assert.match(problem(parsePort('70000:80')), /host port 70000 is out of range/);
  assert.match(problem(parsePort('80:0')), /guest port 0 is out of range/);
  assert.match(problem(parsePort('53/sctp')), /protocol "sctp"/);
  assert.match(problem(parsePort('1:2:3:4')), /too many parts/);
  assert.match(problem(parsePort('8080-8081:80-81')), /not a number/);
  assert.match(problem(parsePort('::1:80:80')), /too many parts|IPv4/);
});

test('volumes: paths are bind mounts, names are named volumes, targets absolute', () => {
  assert.deepEqual(parseMount('./src:/srv:ro'), {
    type: 'bind',
    source: './src',
    target: '/srv',
    readOnly: true,
  });
  assert.deepEqual(parseMount('/abs:/data'), {
    type: 'bind',
    source: '/abs',
    target: '/data',
    readOnly: false,
  });
  assert.deepEqual(parseMount('pgdata:/var/lib/pg:rw'), {
    type: 'volume',
    source: 'pgdata',
    target: '/var/lib/pg',
    readOnly: false,
  });
  assert.match(problem(parseMount('pgdata')), /SOURCE:TARGET/);
  assert.match(problem(parseMount('./a:rel')), /absolute/);
  assert.match(problem(parseMount('./a:/b:rx')), /unknown mode "rx"/);
});
