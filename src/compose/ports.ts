import { isIPv4 } from 'node:net';

export type Protocol = 'tcp' | 'udp';

/** One `ports:` entry. `host` 0 means an ephemeral port chosen when the VM starts. */
export interface PortMapping {
  hostIp: string;
  host: number;
  guest: number;
  protocol: Protocol;
}

const portFormats = '"8080:80", "80", "127.0.0.1:8080:80", optionally with /tcp or /udp';

function portNumber(text: string, what: string, min: number): number | string {
  if (!/^\d+$/.test(text)) return `${what} "${text}" is not a number; use ${portFormats}`;
  const port = Number(text);
  // The text, not the number: a 400-digit port would read "Infinity".
  if (text.replace(/^0+(?=\d)/, '').length > 5 || port < min || port > 65535)
    return `${what} ${text.length > 12 ? `${text.slice(0, 12)}… (${text.length} digits)` : text} is out of range ${min}-65535`;
  return port;
}

/** Parses `[IP:][HOST:]GUEST[/tcp|/udp]`; host ports bind to 127.0.0.1 unless an IP is given. */
export function parsePort(spec: string): PortMapping | string {
  const [addressPart = '', protocol = 'tcp', ...extra] = spec.split('/');
  if (extra.length > 0 || (protocol !== 'tcp' && protocol !== 'udp'))
    return `protocol "${spec.slice(addressPart.length + 1)}" is not supported; use /tcp or /udp`;
  const parts = addressPart.split(':');
  if (parts.length > 3) return `"${spec}" has too many parts; use ${portFormats}`;
  const guestText = parts.pop()!;
  const hostText = parts.pop() ?? '0';
  const hostIp = parts.pop() ?? '127.0.0.1';
  if (!isIPv4(hostIp)) return `host address "${hostIp}" is not an IPv4 address`;
  const guest = portNumber(guestText, 'guest port', 1);
  if (typeof guest === 'string') return guest;
  const host = portNumber(hostText, 'host port', 0);
  if (typeof host === 'string') return host;
  return { hostIp, host, guest, protocol };
}

export function formatPort(port: PortMapping): string {
  const ip = port.hostIp === '127.0.0.1' ? '' : `${port.hostIp}:`;
  return `${ip}${port.host}:${port.guest}/${port.protocol}`;
}
