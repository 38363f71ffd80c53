// The client's IP: the peer address, or X-Forwarded-For's nearest untrusted hop when the peer is a
// trusted proxy (`server.trustedProxies`). Never believe X-Forwarded-For from anyone else.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { HttpResponse } from '../uws.js';

export type ClientIpResolver = (res: HttpResponse, headers: Readonly<Record<string, string>>) => string;

const decoder = new TextDecoder();

/** The peer's address as text ("127.0.0.1", "::1"); uWS gives IPv4-mapped IPv6 for v4 peers on a v6 socket. */
export function peerAddress(res: Pick<HttpResponse, 'getRemoteAddressAsText'>): string {
  const text = decoder.decode(res.getRemoteAddressAsText());
  return normalizeIp(text);
}

export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  if (lower.startsWith('::ffff:') && isIPv4(lower.slice(7))) return lower.slice(7);
  // uWS pads IPv6 with leading zeros on some builds: normalise through URL parsing.
  if (isIPv6(lower)) {
    try {
      return new URL(`http://[${lower}]/`).hostname.slice(1, -1);
    } catch {
      return lower;
    }
  }
  return lower;
}

export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split('/');
    const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
    if (!isIPv4(addr!) && !isIPv6(addr!)) throw new Error(`server.trustedProxies: "${entry}" is not an IP or CIDR`);
    if (bits !== undefined) list.addSubnet(addr!, Number(bits), type);
    else list.addAddress(addr!, type);
  }
  return list;
}

function isTrusted(list: BlockList, ip: string): boolean {
  return list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
}

export function createClientIpResolver(trustedProxies: readonly string[]): ClientIpResolver {
  if (trustedProxies.length === 0) return (res) => peerAddress(res);
  const list = trustedProxyList(trustedProxies);
  return (res, headers) => {
    const peer = peerAddress(res);
    return resolveForwarded(peer, headers['x-forwarded-for'], list);
  };
}

/** Walks X-Forwarded-For from the right, skipping trusted proxies; the first untrusted hop is the client. */
export function resolveForwarded(peer: string, xff: string | undefined, list: BlockList): string {
  if (!isTrusted(list, peer) || !xff) return peer;
  const hops = xff
    .split(',')
    .map((h) => normalizeIp(h.trim()))
    .filter((h) => isIPv4(h) || isIPv6(h));
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!isTrusted(list, hops[i]!)) return hops[i]!;
  }
  return hops[0] ?? peer;
}
