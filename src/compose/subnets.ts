import { isIPv4 } from 'node:net';

// IPv4 subnets of the project's networks, as numbers: pure arithmetic for the schema (parse),
// the checks (overlap, an address inside) and the allocation (resolve.ts).

export interface Subnet {
  /** The network address, as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

/** QEMU's user-mode network (NIC 1): a private subnet must not hide it. */
export const userModeSubnet: Subnet = { base: ipNumber('10.0.2.0'), prefix: 24 };

/** Where subnets of networks that name none come from: 10.10.0.0/24, 10.10.1.0/24, … */
export const automaticSubnets = { first: ipNumber('10.10.0.0'), count: 256, prefix: 24 } as const;

export function ipNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

export function ipText(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

const size = (s: Subnet) => 2 ** (32 - s.prefix);

export const formatSubnet = (s: Subnet) => `${ipText(s.base)}/${s.prefix}`;

/**
 * `10.20.0.0/24`: the network address and a prefix of 8 to 30 (a /31 or /32 leaves no address
 * for a VM besides the ones the convention keeps: the network's first and last).
 */
export function parseSubnet(text: string): Subnet | string {
  const [ip = '', prefixText, ...rest] = text.split('/');
  if (rest.length > 0 || prefixText === undefined || !isIPv4(ip) || !/^\d{1,2}$/.test(prefixText))
    return `"${text}" is not an IPv4 subnet; write it as 10.20.0.0/24`;
  const prefix = Number(prefixText);
  if (prefix < 8 || prefix > 30) return `a /${prefix} subnet is not supported; use a prefix from /8 to /30`;
  const base = ipNumber(ip);
  if (base % 2 ** (32 - prefix) !== 0)
    return `${text} has host bits set; its network address is ${ipText(base - (base % 2 ** (32 - prefix)))}/${prefix}`;
  return { base, prefix };
}

export const overlaps = (a: Subnet, b: Subnet) => a.base < b.base + size(b) && b.base < a.base + size(a);

/** Whether `ip` is an address a VM may have there: not the network's first or last. */
export const holdsHost = (s: Subnet, ip: string) => {
  const n = ipNumber(ip);
  return n > s.base && n < s.base + size(s) - 1;
};

/** The addresses handed out in order: from the network's second (the first is kept for a gateway) to the one before broadcast. */
export function hostRange(s: Subnet): { first: number; last: number } {
  return { first: s.base + 2, last: s.base + size(s) - 2 };
}

/** How many VMs a subnet holds. */
export const capacityOf = (s: Subnet) => Math.max(0, hostRange(s).last - hostRange(s).first + 1);
