import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { readIfPresent, writeAtomically } from '../util/fs.js';

// Project keys are made in process (no ssh-keygen needed), in OpenSSH format so that
// `ssh -i` and ssh2 both read them.

const { utils } = ssh2;

export interface KeyPair {
  /** OpenSSH private key (PEM-armoured), ending in a newline. */
  privateKey: string;
  /** One authorized_keys line, `ssh-ed25519 AAAA… comment`, without a newline. */
  publicKey: string;
}

export interface KeyFiles extends KeyPair {
  privateKeyPath: string;
}

const PRIVATE_KEY = 'id_ed25519';
const DIR_MODE = 0o700;
const PRIVATE_MODE = 0o600;
const PUBLIC_MODE = 0o644;

/**
 * A new ed25519 pair. ssh2's generator strips the leading zero bytes of the public key, so one
 * pair in 256 (its key starts with 0x00) comes out malformed: no client can use it, and a
 * guest given it as its host key could never be reached (mscdex/ssh2#1390, #1513). Such a pair
 * is made again until it parses.
 */
export function generateKeyPair(comment: string): KeyPair {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    const keys = { privateKey: ensureNewline(pair.private), publicKey: pair.public.trim() };
    if (
      !(utils.parseKey(keys.privateKey) instanceof Error) &&
      !(utils.parseKey(keys.publicKey) instanceof Error)
    )
      return keys;
  }
}

/**
 * The key pair in `dir` (`id_ed25519`, `id_ed25519.pub`), made if missing and reused if
 * present. Modes too open for ssh are tightened. An unreadable private key is an error,
 * never replaced: it may be the only way into existing VMs.
 */
export async function ensureKeyPair(dir: string, comment: string): Promise<KeyFiles> {
  const privateKeyPath = join(dir, PRIVATE_KEY);
  const publicKeyPath = `${privateKeyPath}.pub`;
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  await tighten(dir, DIR_MODE);

  const existing = await readIfPresent(privateKeyPath);
  if (existing === undefined) {
    const pair = generateKeyPair(comment);
    // The private key lands last and atomically: its presence means the pair is complete.
    await writeAtomically(publicKeyPath, `${pair.publicKey}\n`, PUBLIC_MODE);
    await writeAtomically(privateKeyPath, pair.privateKey, PRIVATE_MODE);
    return { privateKeyPath, ...pair };
  }

  await tighten(privateKeyPath, PRIVATE_MODE);
  const publicKey = await matchingPublicKey(privateKeyPath, existing, publicKeyPath, comment);
  return { privateKeyPath, privateKey: existing, publicKey };
}

/** The .pub line if it belongs to the private key; else it is rewritten from the private key. */
async function matchingPublicKey(
  privateKeyPath: string,
  privateKey: string,
  publicKeyPath: string,
  comment: string,
) {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error)
    throw new Error(`${privateKeyPath}: not a usable private key: ${parsed.message}`);
  const keyPart = `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;

  const publicLine = (await readIfPresent(publicKeyPath))?.trim();
  if (publicLine !== undefined && (publicLine === keyPart || publicLine.startsWith(`${keyPart} `))) {
    await tighten(publicKeyPath, PUBLIC_MODE);
    return publicLine;
  }
  const rebuilt = `${keyPart} ${parsed.comment || comment}`;
  await writeAtomically(publicKeyPath, `${rebuilt}\n`, PUBLIC_MODE);
  return rebuilt;
}

/** Removes group and other bits that `mode` does not grant; never loosens. */
async function tighten(path: string, mode: number): Promise<void> {
  const current = (await stat(path)).mode & 0o777;
  if ((current & ~mode) !== 0) await chmod(path, current & mode);
}

const ensureNewline = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
