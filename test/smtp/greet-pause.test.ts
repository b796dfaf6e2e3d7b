/*
 * `smtp.limits.greet_pause_ms`: the listener replaces smtp-server's fixed 100 ms early-talker wait with its own
 * connection set-up (installGreetPause). These tests pin the behaviour that depends on the library's internals
 * (SMTPServer.connect, SMTPConnection._setListeners / connectionReady / _ready, the maxClients check of init), so
 * an smtp-server upgrade that changes them fails here: with 0 a client that talks at once is served (greeting
 * first, no 421); with a pause it gets 421 (the library's "You talk too soon", in our words) and is dropped (and the refusal is audited);
 * a client that waits gets the greeting; the library's maxClients backstop still answers 421.
 */
import net from 'node:net';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPServer } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { installGreetPause } from '../../src/smtp/listener.js';
import { RawSmtp } from './listener-client.js';

describe('smtp greet_pause_ms', () => {
  it('relies on smtp-server internals that still exist', () => {
    expect(typeof SMTPConnection.prototype._setListeners).toBe('function');
    expect(typeof SMTPConnection.prototype.connectionReady).toBe('function');
    // the listener's connection subclass overrides these (reply writer, line watch) and drops the greeting
    // _sendGreeting sends when ours already left at accept
    expect(typeof SMTPConnection.prototype.send).toBe('function');
    expect(typeof SMTPConnection.prototype._createParser).toBe('function');
    expect(String((SMTPConnection.prototype as unknown as Record<string, unknown>)._sendGreeting)).toContain('this.send(220');
    expect(typeof SMTPServer.prototype._onError).toBe('function');
    expect(typeof SMTPServer.prototype._onClientConnect).toBe('function');
    // the library still calls this.connect(socket, options) for every accepted socket
    expect(SMTPServer.prototype.connect.length).toBe(2);
  });

  describe('default (0): greet at once', () => {
    let t: TestGatehouse;
    beforeAll(async () => {
      t = await startGatehouse({});
    });
    afterAll(async () => {
      await t?.stop();
    });

    it('defaults to 0', () => {
      expect(t.gh.config.smtp.limits.greet_pause_ms).toBe(0);
    });

    it('serves a client that sends EHLO before it has read the greeting: 220 first, then 250', async () => {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        c.write('EHLO early.test\r\n');
        const greeting = await c.read();
        expect(greeting.code).toBe(220);
        const reply = await c.read();
        expect(reply.code).toBe(250);
        expect(reply.text).not.toContain('too soon');
        expect((await c.cmd('QUIT')).code).toBe(221);
      } finally {
        c.close();
      }
      expect(t.decisions.some((d) => d.rule === 'smtp.pregreet')).toBe(false);
    });
  });

  describe('a pause', () => {
    let t: TestGatehouse;
    beforeAll(async () => {
      t = await startGatehouse({ smtp: { limits: { greet_pause_ms: 400 } } });
    });
    afterAll(async () => {
      await t?.stop();
    });

    it('refuses a client that talks before the greeting with 421, drops it and audits the refusal', async () => {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        c.write('EHLO early.test\r\n');
        const r = await c.read();
        expect(r.code).toBe(421);
        // the library's text ("You talk too soon") is replaced by ours (src/smtp/replies.ts)
        expect(r.text).toBe('421 4.7.0 gatehouse.test Error: talked before the greeting');
        expect(await c.waitClosed()).toBe(true);
      } finally {
        c.close();
      }
      const rec = t.decisions.find((d) => d.rule === 'smtp.pregreet');
      expect(rec?.verdict).toBe('deny');
      expect(rec?.service).toBe('smtp');
    });

    it('greets a client that waits, and serves it', async () => {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        expect((await c.read()).code).toBe(220);
        expect((await c.cmd('EHLO patient.test')).code).toBe(250);
        expect((await c.cmd('QUIT')).code).toBe(221);
      } finally {
        c.close();
      }
    });
  });

  describe('on a bare smtp-server', () => {
    const servers: SMTPServer[] = [];
    afterEach(async () => {
      for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
    });

    async function start(maxClients: number, pause: number): Promise<number> {
      const server = new SMTPServer({ authOptional: true, disableReverseLookup: true, logger: false, maxClients, closeTimeout: 50 });
      server.on('error', () => undefined);
      installGreetPause(server, () => pause);
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      return (server.server.address() as net.AddressInfo).port;
    }

    it('keeps the maxClients backstop of SMTPConnection.init', async () => {
      const port = await start(1, 0);
      const a = await RawSmtp.connect(port);
      try {
        expect((await a.read()).code).toBe(220);
        const b = await RawSmtp.connect(port);
        try {
          const r = await b.read();
          expect(r.code).toBe(421);
          expect(r.text).toContain('Too many connected clients');
        } finally {
          b.close();
        }
      } finally {
        a.close();
      }
    });

    it('with a pause, the early talker still gets the library reply (hook optional)', async () => {
      const port = await start(10, 300);
      const c = await RawSmtp.connect(port);
      try {
        c.write('HELO early.test\r\n');
        expect((await c.read()).text).toContain('You talk too soon');
      } finally {
        c.close();
      }
    });
  });
});
