// Engine.IO session ids name the node that owns them (src/protocol: `<nodeId>.<22 base64url
// chars>`), so any gateway — or any ws node — can route a request carrying a sid to its owner
// without shared state.

const SID = /^([A-Za-z0-9_-]{1,32})\.[A-Za-z0-9_-]{8,64}$/;

/** The nodeId a sid names, or undefined when it is not a chatd sid. */
export function ownerOfSid(sid: string | null | undefined): string | undefined {
  if (!sid) return undefined;
  return SID.exec(sid)?.[1];
}

/**
 * The `sid` of an Engine.IO handshake answer (`0{"sid":…}` on polling, the first text frame on a
 * websocket), so a gateway learns which upstream owns the node the sid names.
 */
export function sidOfOpenPacket(packet: string): string | undefined {
  if (!packet.startsWith('0{')) return undefined;
  try {
    const sid = (JSON.parse(packet.slice(1)) as { sid?: unknown }).sid;
    return typeof sid === 'string' ? sid : undefined;
  } catch {
    return undefined;
  }
}
