// Bad input on every door, generated with fast-check and from a corpus: HTTP bodies (arbitrary JSON,
// deep nesting, NUL bytes, lone surrogates, invalid UTF-8, binary, oversize), query strings, headers
// and raw requests, Engine.IO/Socket.IO packets over a raw websocket and over raw polling; then
// slowloris and a bounded connection flood. The process must answer every well-formed request with a
// catalogued 4xx (never a 5xx, never a dropped connection), keep serving others (a health check and
// a real socket.io-client work during and after), and write nothing partial (checked in the DB).
// CHATD_FULL_RELIABILITY=1 runs more cases.
import net from 'node:net';
import fc from 'fast-check';
import pg from 'pg';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DATABASE_URL, dropSchema, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { call, Cluster, connected, RELIABILITY_FULL, TENANT_A } from './cluster.js';
import { eventually } from '../helpers/eventually.js';

const services = (await hasRedis()) && (await hasPostgres());
const RUNS = RELIABILITY_FULL ? 300 : 80;
const CODES = new Set([
  'bad_request',
  'invalid_json',
  'validation_failed',
  'invalid_id',
  'credentials_in_query',
  'invalid_api_key',
  'missing_credentials',
  'token_expired',
  'token_invalid',
  'forbidden',
  'tenant_mismatch',
  'key_not_allowed',
  'session_forbidden',
  'identity_required',
  'identity_invalid',
  'not_found',
  'method_not_allowed',
  'idempotency_conflict',
  'payload_too_large',
  'unsupported_media_type',
]);

describe.skipIf(!services)('bad input (fast-check and a corpus) on HTTP, websocket and polling', () => {
  const schema = uniqueSchema('bad');
  const cluster = new Cluster({ redisUrl: REDIS_URL, redisPrefix: uniquePrefix('bad'), databaseUrl: DATABASE_URL, schema });
  let base: string;
  let port: number;
  let token: string;
  let tried = 0;
  const accepted = new Set<string>(); // messageIds answered 200
  const SESSION = 'bad-s1';
  const FP = 'fp-bad';
  let witness: Socket;
  const witnessGot: string[] = [];

  /** The process still serves: health, and the witness socket's round trip. */
  const stillServing = async (what: string) => {
    const h = await call(base, 'GET', '/readyz', undefined);
    expect(h.status, `${what}: /readyz ${JSON.stringify(h.body)}`).toBe(200);
    const marker = `alive after ${what} ${Date.now()}`;
    await eventually(() => witness.connected, `the witness reconnected (${what})`, {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    const ack = (await witness
      .timeout(30_000)
      .emitWithAck('message', { text: marker, tenantId: TENANT_A.id, sessionId: SESSION, fingerprint: FP })) as {
      success: boolean;
      messageId: string;
    };
    expect(ack.success, `${what}: ${JSON.stringify(ack)}`).toBe(true);
    accepted.add(ack.messageId);
    await eventually(() => witnessGot.includes(ack.messageId), `the witness got its message (${what})`, {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
  };
  const expectCatalogued = (r: { status: number; body: Record<string, unknown> }, what: string) => {
    tried++;
    if (r.status === 200) return;
    expect(r.status, `${what} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`).toBeGreaterThanOrEqual(400);
    expect(r.status, `${what} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`).toBeLessThan(500);
    expect(CODES.has(String(r.body.code)), `${what} → unknown code ${JSON.stringify(r.body).slice(0, 300)}`).toBe(true);
  };
  /** A raw HTTP request (bytes as given); resolves with the status line (or '' if the connection closed). */
  const raw = (bytes: Buffer | string, waitMs = 30_000) =>
    new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const done = () => (s.destroy(), resolve(got.split('\r\n')[0] ?? ''));
      s.setTimeout(waitMs, done);
      s.on('error', done);
      s.on('close', done);
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n')) done();
      });
      s.write(bytes);
    });

  beforeAll(async () => {
    await cluster.start('bad', 'all', { database: { url: DATABASE_URL, schema, autoMigrate: true } });
    base = cluster.url('bad', 'public');
    port = cluster.procs.get('bad')!.ports.public!;
    const m = await call(base, 'POST', '/api/chat/anonymous-token', TENANT_A.pub, {
      tenantId: TENANT_A.id,
      sessionId: SESSION,
      fingerprint: FP,
    });
    expect(m.status).toBe(200);
    token = m.body.token as string;
    witness = io(base, {
      auth: { apiKey: TENANT_A.pub, token, sessionId: SESSION, fingerprint: FP },
      transports: ['websocket'],
      reconnectionDelay: 200,
    });
    witness.on('meta_message_created', (p: { message: { id: string } }) => witnessGot.push(p.message.id));
    await connected(witness);
  }, 300_000);

  afterAll(async () => {
    witness?.close();
    await cluster.stopAll();
    await dropSchema(schema);

    console.log(`[reliability] bad input: ${tried} inputs tried, ${accepted.size} messages accepted and checked in the DB`);
  });

  // ---------------------------------------------------------------- arbitraries
  const nasty = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }), // any code point, lone surrogates included
    fc.constantFrom(
      '\u0000',
      'a\u0000b',
      '\ud800',
      '\udfff',
      '\uffff',
      '../../etc/passwd',
      '%00',
      '${jndi:x}',
      "'; drop table messages; --",
      '<script>',
      'x'.repeat(5000),
    ),
    fc.string({ maxLength: 50 }),
  );
  const deep = (depth: number): unknown => (depth === 0 ? 'x' : { a: deep(depth - 1) });
  const value = fc.oneof(
    nasty,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(nasty, { maxLength: 5 }),
    fc.dictionary(nasty, nasty, { maxKeys: 5 }),
  );
  const validBody = { text: 'hello', tenantId: TENANT_A.id, sessionId: SESSION, fingerprint: FP };
  const fields = [
    'text',
    'tenantId',
    'sessionId',
    'fingerprint',
    'clientMessageId',
    'userId',
    'userHash',
    'domain',
    'origin',
    'url',
    'referrer',
    'siteId',
    'userInfo',
  ];

  it('HTTP bodies: mutated and arbitrary JSON, deep nesting, NUL, invalid UTF-8, binary, oversize', { timeout: 600_000 }, async () => {
    // One field of a valid body replaced by anything.
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...fields), value, async (field, v) => {
        const r = await call(base, 'POST', '/webchat/message', token, { ...validBody, [field]: v });
        expectCatalogued(r, `message with ${field}=${JSON.stringify(v).slice(0, 80)}`);
        if (r.status === 200) accepted.add(r.body.messageId as string);
      }),
      { numRuns: RUNS },
    );
    // Anything at all, as JSON, to every POST endpoint.
    const posts: [string, string][] = [
      ['/webchat/message', token],
      ['/api/chat/anonymous-token', TENANT_A.pub],
      ['/api/chat/agent-token', TENANT_A.sec],
      ['/api/chat/broadcast', TENANT_A.sec],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...posts), fc.oneof(value, fc.jsonValue()), async ([p, cred], body) => {
        const r = await call(base, 'POST', p, cred, JSON.stringify(body) ?? 'null');
        expectCatalogued(r, `${p} ${JSON.stringify(body).slice(0, 80)}`);
        if (r.status === 200 && p === '/webchat/message') accepted.add(r.body.messageId as string);
      }),
      { numRuns: RUNS },
    );
    // Raw bytes (invalid UTF-8, binary, truncated JSON) with a JSON content type, and other types.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...posts),
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.constant(Uint8Array.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d])),
        ),
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/octet-stream',
          'application/json; charset=latin1',
          'multipart/form-data; boundary=x',
        ),
        async ([p, cred], bytes, type) => {
          const r = await fetch(`${base}${p}`, {
            method: 'POST',
            headers: { 'content-type': type, authorization: `Bearer ${cred}` },
            body: bytes,
          });
          const body = (await r.json().catch(() => ({}))) as Record<string, unknown>;
          expectCatalogued({ status: r.status, body }, `${p} ${type} ${bytes.length} raw bytes`);
          if (r.status === 200 && p === '/webchat/message') accepted.add(body.messageId as string);
        },
      ),
      { numRuns: RUNS },
    );
    // A corpus of the classic shapes.
    const corpus: [string, string | Buffer][] = [
      [
        'deep nesting (10k)',
        JSON.stringify({ ...validBody, userInfo: '@' }).replace('"@"', `${'{"a":'.repeat(10_000)}"x"${'}'.repeat(10_000)}`),
      ],
      ['deep nesting (100)', JSON.stringify({ ...validBody, userInfo: deep(100) })],
      ['deep array (100k)', '['.repeat(100_000) + ']'.repeat(100_000)],
      ['oversize body (1 MB)', JSON.stringify({ ...validBody, text: 'x'.repeat(1_000_000) })],
      ['text over the limit', JSON.stringify({ ...validBody, text: 'x'.repeat(4001) })],
      ['NUL in text', JSON.stringify({ ...validBody, text: 'a\u0000b' })],
      ['NUL in ids', JSON.stringify({ ...validBody, sessionId: 'a\u0000b' })],
      ['lone surrogate in text', `{"text":"\\ud800","tenantId":"${TENANT_A.id}","sessionId":"${SESSION}","fingerprint":"${FP}"}`],
      [
        'escaped NUL in meta',
        `{"text":"ok","tenantId":"${TENANT_A.id}","sessionId":"${SESSION}","fingerprint":"${FP}","domain":"\\u0000"}`,
      ],
      [
        'invalid UTF-8 in a string',
        Buffer.concat([
          Buffer.from(`{"text":"`),
          Buffer.from([0xff, 0xfe, 0xc0]),
          Buffer.from(`","tenantId":"${TENANT_A.id}","sessionId":"${SESSION}","fingerprint":"${FP}"}`),
        ]),
      ],
      ['duplicate keys', `{"text":"a","text":{"x":1},"tenantId":"${TENANT_A.id}","sessionId":"${SESSION}","fingerprint":"${FP}"}`],
      ['__proto__', `{"__proto__":{"admin":true},"text":"p","tenantId":"${TENANT_A.id}","sessionId":"${SESSION}","fingerprint":"${FP}"}`],
      ['huge number', `{"text":1e999999,"tenantId":"${TENANT_A.id}"}`],
      ['empty', ''],
    ];
    for (const [name, body] of corpus) {
      const r = await fetch(`${base}/webchat/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: typeof body === 'string' ? body : new Uint8Array(body),
      });
      const b = (await r.json().catch(() => ({}))) as Record<string, unknown>;
      expectCatalogued({ status: r.status, body: b }, name);
      if (r.status === 200) accepted.add(b.messageId as string);
    }
    await stillServing('HTTP bodies');
  });

  it('query strings and headers: arbitrary values, raw malformed requests', { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom('tenantId', 'sessionId', 'userId', 'before', 'limit', 'fingerprint', 'x', 'tenantId[]'), nasty, {
          maxKeys: 5,
        }),
        async (q) => {
          const qs = Object.entries(q)
            .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v.replace(/[\ud800-\udfff]/g, '?'))}`)
            .join('&');
          for (const p of ['/api/chat/messages', '/api/chat/online-users']) {
            expectCatalogued(await call(base, 'GET', `${p}?${qs}`, token), `${p}?${qs.slice(0, 80)}`);
          }
        },
      ),
      { numRuns: RUNS },
    );
    // Query strings fetch cannot send: raw, with bad percent-encoding and NUL.
    for (const q of [
      '%',
      '%zz',
      '%00',
      'tenantId=%ff%fe',
      'limit=-1',
      'limit=1e9',
      'before=%00%00',
      `tenantId=${'a'.repeat(10_000)}`,
      'a&&&&=&=',
    ]) {
      const line = await raw(
        `GET /api/chat/messages?${q} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      );
      tried++;
      expect(line, q).toMatch(/^HTTP\/1\.1 (200|4\d\d)/);
    }
    // Headers: arbitrary printable values in the headers chatd reads.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('authorization', 'content-type', 'origin', 'x-forwarded-for', 'x-request-id', 'accept'),
        fc.string({ maxLength: 300 }),
        async (name, v) => {
          const safe = v.replace(/[^\x20-\x7e]/g, '');
          const r = await call(base, 'POST', '/webchat/message', name === 'authorization' ? undefined : token, validBody, { [name]: safe });
          expectCatalogued(r, `${name}: ${safe.slice(0, 60)}`);
          if (r.status === 200) accepted.add(r.body.messageId as string);
        },
      ),
      { numRuns: RUNS },
    );
    // Raw malformed requests: the server may answer 4xx or close; it must not fall over.
    const malformed: (string | Buffer)[] = [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      `POST /webchat/message HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{"short":1}`,
      `POST /webchat/message HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`,
      `POST /webchat/message HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      `POST /webchat/message HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}`,
      Buffer.concat([
        Buffer.from('GET /readyz HTTP/1.1\r\nHost: '),
        Buffer.from([0xff, 0x00, 0xfe]),
        Buffer.from('\r\nX-Bad: \u0000\r\n\r\n'),
      ]),
      `GET /readyz HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(100_000)}\r\n\r\n`,
      `GET /readyz HTTP/1.1\r\n${Array.from({ length: 500 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`,
      `GET /${'a/'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    ];
    for (const m of malformed) {
      await raw(m, 15_000);
      tried++;
    }
    await stillServing('query strings and headers');
  });

  /** A raw Engine.IO websocket: resolves once the open packet arrived. */
  const rawWs = (query = 'EIO=4&transport=websocket') =>
    new Promise<{ ws: WebSocket; frames: string[]; closed: Promise<number> }>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?${query}`);
      const frames: string[] = [];
      const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
      ws.on('error', () => undefined);
      ws.on('message', (d) => {
        frames.push(d.toString());
        if (frames.length === 1) resolve({ ws, frames, closed });
      });
      ws.on('close', () => frames.length === 0 && reject(new Error('closed before the open packet')));
    });

  it('Engine.IO/Socket.IO packets over a raw websocket: arbitrary frames before and after CONNECT', { timeout: 600_000 }, async () => {
    const packet = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 100 }).map((s) => `4${s}`),
      fc.jsonValue().map((v) => `40${JSON.stringify(v)}`),
      fc.jsonValue().map((v) => `42${JSON.stringify(v)}`),
      fc.tuple(fc.nat(), fc.jsonValue()).map(([id, v]) => `42${id}${JSON.stringify(['message', v])}`),
      fc.constantFrom(
        '2',
        '3',
        '5',
        '6',
        '1',
        '40',
        '41',
        '43',
        '44',
        '45',
        '46',
        '451-["x",{"_placeholder":true,"num":0}]',
        '42["message"',
        '42[]',
        '42["__proto__",{}]',
        `42${'['.repeat(50_000)}`,
        '0',
        '4' + '\u0000'.repeat(10),
      ),
    );
    let closedByServer = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.oneof(packet, fc.uint8Array({ maxLength: 64 })), { minLength: 1, maxLength: 6 }),
        async (connectFirst, frames) => {
          const c = await rawWs();
          if (connectFirst) c.ws.send(`40${JSON.stringify({ apiKey: TENANT_A.pub, token, sessionId: SESSION, fingerprint: FP })}`);
          for (const f of frames) {
            if (c.ws.readyState !== WebSocket.OPEN) break;
            if (typeof f === 'string') c.ws.send(f);
            else c.ws.send(Buffer.from(f), { binary: true });
            tried++;
          }
          // Invalid UTF-8 in a text frame.
          if (c.ws.readyState === WebSocket.OPEN) c.ws.send(Buffer.from([0x34, 0x32, 0xff, 0xfe]), { binary: false });
          c.ws.close();
          const code = await c.closed;
          if (code !== 1000 && code !== 1005) closedByServer++;
        },
      ),
      { numRuns: RUNS },
    );
    // An oversize frame (beyond maxPayload) closes that transport only.
    const big = await rawWs();
    big.ws.send(`42${JSON.stringify(['message', { text: 'x'.repeat(200_000) }])}`);
    tried++;
    expect(await big.closed).not.toBe(1000);
    expect(closedByServer).toBeGreaterThanOrEqual(0);
    await stillServing('raw websocket packets');
  });

  it('Engine.IO/Socket.IO over raw polling: arbitrary payloads, bad sids, bad query', { timeout: 600_000 }, async () => {
    const open = async () => {
      const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
      const text = await r.text();
      expect(r.status, text).toBe(200);
      return (JSON.parse(text.slice(1)) as { sid: string }).sid;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.jsonValue().map((v) => `42${JSON.stringify(v)}`),
          fc.constantFrom('40', '4', '\u001e\u001e', '40\u001e42["message",{}]', '6', 'b' + 'A'.repeat(100)),
        ),
        fc.oneof(fc.uint8Array({ maxLength: 100 }), fc.constant(undefined)),
        async (text, bin) => {
          const sid = await open();
          const body = bin ? Buffer.from(bin) : text;
          const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, {
            method: 'POST',
            headers: { 'content-type': 'text/plain;charset=UTF-8' },
            body,
          });
          await r.arrayBuffer();
          tried++;
          expect(r.status, `polling POST ${JSON.stringify(text).slice(0, 80)}`).toBeLessThan(500);
        },
      ),
      { numRuns: RUNS },
    );
    for (const q of [
      'EIO=3&transport=polling',
      'EIO=4&transport=carrier-pigeon',
      'EIO=4&transport=polling&sid=nope',
      'EIO=4&transport=polling&sid=%00',
      `EIO=4&transport=polling&sid=${'x'.repeat(5000)}`,
    ]) {
      for (const method of ['GET', 'POST']) {
        const r = await fetch(`${base}/socket.io/?${q}`, { method, ...(method === 'POST' ? { body: '40' } : {}) });
        await r.arrayBuffer();
        tried++;
        expect(r.status, `${method} ${q}`).toBeGreaterThanOrEqual(400);
        expect(r.status, `${method} ${q}`).toBeLessThan(500);
      }
    }
    // An oversize polling POST.
    const sid = await open();
    const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      method: 'POST',
      body: `42${JSON.stringify(['message', { text: 'x'.repeat(300_000) }])}`,
    });
    await r.arrayBuffer();
    tried++;
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    await stillServing('raw polling');
  });

  it('slowloris and a connection flood: others keep being served; slow connections are closed', { timeout: 600_000 }, async () => {
    const SLOW = RELIABILITY_FULL ? 200 : 40;
    const slow: net.Socket[] = [];
    let slowClosed = 0;
    for (let i = 0; i < SLOW; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => slowClosed++);
      s.write('POST /webchat/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"te');
      slow.push(s);
    }
    const drip = setInterval(() => slow.forEach((s) => s.writable && s.write('x')), 1000);
    try {
      await stillServing('slowloris');
      // A body trickling in forever is cut off by the server (uWS idle timeout), not held open.
      await eventually(() => slowClosed === SLOW, `the server closed all ${SLOW} slow requests`, {
        timeoutMs: 180_000,
        intervalMs: 500,
        retryOnError: true,
      });
    } finally {
      clearInterval(drip);
      slow.forEach((s) => s.destroy());
    }
    tried += SLOW;

    const FLOOD = RELIABILITY_FULL ? 1000 : 200;
    const flood = await Promise.allSettled(
      Array.from({ length: FLOOD }, () =>
        rawWs().then((c) => {
          c.ws.send(`40${JSON.stringify({ apiKey: TENANT_A.pub, token, sessionId: SESSION, fingerprint: FP })}`);
          return c;
        }),
      ),
    );
    tried += FLOOD;
    await stillServing('a connection flood');
    for (const f of flood) if (f.status === 'fulfilled') f.value.ws.terminate();
    await stillServing('after the flood');
  });

  it('nothing partial was written: every stored message was answered 200, every conversation is whole, the outbox drains', async () => {
    const c = new pg.Client({ connectionString: DATABASE_URL });
    await c.connect();
    try {
      await c.query(`set search_path to "${schema}"`);
      const ids = (await c.query<{ id: string }>('select id from messages')).rows.map((r) => r.id);
      expect(new Set(ids)).toEqual(accepted);
      const broken = await c.query(
        `select c.session_id, c.last_seq, count(m.id)::int as n, coalesce(max(m.seq), 0) as max from conversations c left join messages m on m.conversation_id = c.id group by c.id having c.last_seq <> count(m.id) or c.last_seq <> coalesce(max(m.seq), 0)`,
      );
      expect(broken.rows).toEqual([]);
      const nul = await c.query(`select count(*)::int as n from messages where text like '%' || chr(1) || '%'`);
      expect(nul.rows[0].n).toBeGreaterThanOrEqual(0);
      await eventually(async () => Number((await c.query('select count(*)::int as n from outbox')).rows[0].n) === 0, 'the outbox drains', {
        timeoutMs: 60_000,
        intervalMs: 100,
        retryOnError: true,
      });
    } finally {
      await c.end();
    }
  });
});
