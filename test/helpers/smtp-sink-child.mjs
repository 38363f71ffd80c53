// A real SMTP server in its own process (the smtp-server package), for the email tests: listens on
// 127.0.0.1:PORT (0 = any; it prints {"port":N} once listening), accepts every message and prints
// each as one JSON line {"from","to":[…],"raw":base64}; refuses for good (550) any recipient
// starting with "reject". Stopped by its parent with SIGKILL (down) or SIGTERM.
import { SMTPServer } from 'smtp-server';

const port = Number(process.argv[2] ?? 0);
const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  onRcptTo(address, _session, callback) {
    if (address.address.startsWith('reject')) {
      const err = new Error('mailbox unavailable');
      err.responseCode = 550;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      process.stdout.write(
        `${JSON.stringify({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('base64'),
        })}\n`,
      );
      callback();
    });
  },
});
server.on('error', (err) => process.stderr.write(`smtp sink: ${err.message}\n`));
server.listen(port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.server.address().port })}\n`));
