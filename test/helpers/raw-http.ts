// A raw HTTP/1.1 exchange over a plain socket, for checking what a client library would hide
// (the exact response head, and who closes the connection).
import net from 'node:net';

/**
 * Sends `requestLine` (and any header lines after it, joined with CRLF) with `Connection: close`;
 * resolves with the response head once the server closes the connection.
 */
export function rawHead(port: number, requestLine: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    s.on('end', () => resolve(data.split('\r\n\r\n')[0]!));
    s.on('error', reject);
    s.write(`${requestLine}\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
}

/** Whether a response head carries `Connection: close`. */
export const saysClose = (head: string) => /\r\nconnection: close(\r\n|$)/i.test(head);
