/*
 * The queue behind the real listener: a trusted local app relays through Gatehouse (nodemailer as the
 * client), the smarthost (a real SMTP sink) refuses the recipient with 550, and the sender, a local user,
 * finds the DSN in her Maildir.
 */
import fs from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { startSink, waitFor, type Sink } from './queue-fixture.js';

describe('queue end to end through the listener', () => {
  let sink: Sink;
  let t: TestGatehouse;
  beforeAll(async () => {
    sink = await startSink();
    sink.rcptReply = (a) => (a === 'nobody@example.net' ? 550 : null);
    t = await startGatehouse({ smtp: { local_domains: ['office.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  it('relays from 127.0.0.1 to the smarthost and bounces a 550 to the local sender', async () => {
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, ignoreTLS: true, logger: false });
    try {
      const info = await client.sendMail({ envelope: { from: 'alice@office.test', to: ['friend@example.net', 'nobody@example.net'] }, raw: 'From: alice@office.test\r\nTo: friend@example.net\r\nSubject: e2e bounce\r\n\r\nhi\r\n' });
      expect(info.accepted).toEqual(['friend@example.net', 'nobody@example.net']);
    } finally {
      client.close();
    }
    await waitFor(() => sink.messages.length === 1);
    expect(sink.messages[0]!.to).toEqual(['friend@example.net']);
    expect(sink.messages[0]!.data.toString()).toContain('Subject: e2e bounce');
    const newDir = path.join(t.gh.config.paths.mailDir, 'alice', 'new');
    const files = await waitFor(() => (fs.existsSync(newDir) && fs.readdirSync(newDir).length === 1 ? fs.readdirSync(newDir) : null));
    const dsn = fs.readFileSync(path.join(newDir, files[0]!), 'latin1');
    expect(dsn).toMatch(/^Return-Path: <>\r\n/);
    expect(dsn).toContain('Final-Recipient: rfc822; nobody@example.net');
    expect(dsn).toContain('Status: 5.1.1');
    expect(dsn).toContain('Subject: e2e bounce');
    await waitFor(() => fs.readdirSync(path.join(t.gh.config.paths.spoolDir, 'env')).length === 0);
  });
});
