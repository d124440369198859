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

test('mount targets: control characters, the root and ".." are refused, shown escaped', () => {
  const cases: [string, string][] = [
    [
      'data:/da\tta',
      'target "/da\\tta" contains a tab; a mount target is an absolute path without control characters',
    ],
    [
      'data:/da\nta',
      'target "/da\\nta" contains a newline; a mount target is an absolute path without control characters',
    ],
    ['data:/data\r', 'target "/data\\r" contains a carriage return; '],
    ['data:/x\x00y', 'target "/x\\x00y" contains the control character "\\x00"; '],
    ['data:/x\x1b[31m', 'target "/x\\x1b[31m" contains the control character "\\x1b"; '],
    ['data:/del\x7f', 'target "/del\\x7f" contains the control character "\\x7f"; '],
    ['data:/c1\x85', 'target "/c1\\x85" contains the control character "\\x85"; '],
    ['data:\tdata', 'target "\\tdata" must be an absolute path in the guest'],
    ['data:/', `target "/" is the guest's root directory; mount on a directory below it, such as /data`],
    ['data://./', `target "//./" is the guest's root directory; `],
    ['data:/a/../etc', 'target "/a/../etc" contains ".."; write the directory without "..", such as /data'],
    ['data:/a/..', 'target "/a/.." contains ".."; '],
    ['data:/..', 'target "/.." contains ".."; '],
    ['./a\nb', '"./a\\nb" is not SOURCE:TARGET[:ro]; '],
  ];
  for (const [spec, message] of cases) {
    const result = problem(parseMount(spec));
    assert.ok(
      result.startsWith(message),
      `${JSON.stringify(spec)}:\n  expected ${message}\n  actual   ${result}`,
    );
    assert.doesNotMatch(result, /[\x00-\x1f\x7f-\x9f]/, 'a control character is shown escaped, never raw'); // eslint-disable-line no-control-regex
  }
});

test('mount targets that are fine: "..." and "..x" names, ".", spaces, backslashes, any script', () => {
  for (const target of ['/a/.../b', '/a/..x', '/./data', '/data/', '/my data', '/back\\slash', '/données/😀'])
    assert.equal((parseMount(`data:${target}`) as { target: string }).target, target, target);
});

test('a port of hundreds of digits is out of range, said with its text cut, never "Infinity"', () => {
  assert.equal(
    parsePort(`${'9'.repeat(400)}:80`),
    'host port 999999999999… (400 digits) is out of range 0-65535',
  );
  assert.equal(
    parsePort(`8080:${'1'.repeat(20)}`),
    'guest port 111111111111… (20 digits) is out of range 1-65535',
  );
  assert.deepEqual(parsePort('000080:80'), { hostIp: '127.0.0.1', host: 80, guest: 80, protocol: 'tcp' });
});
