/*
 * `npm run bench:load`: load and fault figures for Gatehouse run as operators run it (child process).
 * (a) idle connections spread over the three listeners, RSS before/after; (b) slowloris sockets trickling
 * bytes from 127.0.1.x while a well-behaved client on 127.0.0.1 is timed; (c) the seeded protocol fuzzer,
 * N inputs per listener (zero crashes, zero hangs); (d) kill -9 at random moments during mixed
 * SMTP/FTP/NNTP load, restart, check every acknowledged message/upload/article is there exactly once.
 * Options: --seed N --idle N --slowloris N --seconds N --fuzz N --rounds N --only a,b,c,d
 * Prints figures, asserts nothing about time; talks only to 127.0.0.0/8.
 */
import { parseArgs } from 'node:util';
import { chaosSetup, runChaos } from './fuzz/chaos.js';
import { runFuzz } from './fuzz/fuzzer.js';
import { freePort, killAll, makeSetup, probe, sleep, startProc, type Proto } from './fuzz/proc.js';
import { loadSetup, openIdle, runSlowloris } from './fuzz/slowloris.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    idle: { type: 'string', default: '1000' },
    slowloris: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    fuzz: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string', default: 'a,b,c,d' },
  },
});
const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const only = new Set(values.only.split(','));
const out = (s: string) => process.stdout.write(`${s}\n`);
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

out(`bench:load seed ${seed} (rerun with --seed ${seed})`);

if (only.has('a')) {
  const n = Number(values.idle);
  const setup = await loadSetup(n, 100);
  const proc = await startProc(setup);
  try {
    await sleep(2000);
    const before = proc.rssMb();
    const t0 = performance.now();
    const idle = await openIdle(setup, n, 20);
    const openMs = performance.now() - t0;
    await sleep(3000);
    const after = proc.rssMb();
    const served = await probe('smtp', setup.ports.smtp);
    out(`(a) idle: ${idle.greeted}/${n} sessions greeted (${idle.failed} failed) over SMTP/FTP/NNTP from 20 addresses in ${(openMs / 1000).toFixed(1)} s`);
    out(`    gatehouse RSS ${before.toFixed(1)} MB before -> ${after.toFixed(1)} MB with them open (+${((after - before) * 1024 / Math.max(1, idle.greeted)).toFixed(1)} KiB/session); aim < 150 MB: ${after < 150 ? 'yes' : 'NO'}`);
    out(`    a new SMTP session meanwhile: ${served === null ? 'REFUSED' : `${served.toFixed(1)} ms`}`);
    for (const c of idle.conns) c.close();
  } finally {
    await proc.stop();
    setup.remove();
  }
}

if (only.has('b')) {
  const n = Number(values.slowloris);
  const setup = await loadSetup(n, 40);
  const proc = await startProc(setup);
  try {
    await sleep(2000);
    const f = await runSlowloris(setup, proc, { sockets: n, addresses: 50, seconds: Number(values.seconds) });
    out(`(b) slowloris: ${f.connected}/${f.sockets} sockets from 50 addresses (127.0.1.1-50) trickling 1 byte/s for ${values.seconds} s; server closed ${f.closedByServer}`);
    out(`    gatehouse RSS ${f.rssMb.before} MB before, peak ${f.rssMb.peak} MB, ${f.rssMb.after} MB at the end`);
    out(`    well-behaved client on 127.0.0.1 (greeting + command + QUIT, each protocol in turn): ${f.client.sessions} sessions served, ${f.client.refused} refused/hung; median ${f.client.medianMs} ms, max ${f.client.maxMs} ms (idle server: ${f.client.idleMedianMs} ms)`);
  } finally {
    await proc.stop();
    setup.remove();
  }
}

if (only.has('c')) {
  const n = Number(values.fuzz);
  const closed = await freePort();
  const setup = await makeSetup({
    auth: { bcrypt_cost: 10, lockout: { failures: 1_000_000 } },
    smtp: { auth_requires_tls: false, local_domains: ['gatehouse.test'], relay: { smarthost: { host: '127.0.0.1', port: closed, tls: 'none' } }, limits: { connections_per_ip: 20, max_errors: 10 } },
    ftp: { tls_required: false, limits: { connections_per_ip: 20, max_login_failures: 1_000_000 } },
    nntp: { auth_requires_tls: false, groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }], limits: { connections_per_ip: 20, posts_per_minute: 100_000 } },
  });
  const proc = await startProc(setup);
  try {
    out(`(c) fuzz: ${n} inputs per listener, seed ${seed}; 35 % valid commands, 50 % mutated, 15 % random lines; 30 % of sessions logged in; bound 15 s per input`);
    for (const proto of ['smtp', 'ftp', 'nntp'] as Proto[]) {
      const r = await runFuzz({ proto, port: setup.ports[proto], n, seed, workers: proto === 'ftp' ? 16 : 8 });
      const alive = proc.alive();
      const answers = alive ? await probe(proto, setup.ports[proto]) : null;
      out(`    ${proto.padEnd(4)} ${r.inputs} inputs in ${(r.ms / 1000).toFixed(1)} s: hangs ${r.hangs}${r.hangs ? ` ${r.hangSamples.join(' ')}` : ''}, server closes ${r.closes}, TLS starts ${r.tlsStarts}, max reply ${r.maxReplyMs} ms; process ${alive ? 'alive' : 'DEAD'}, answers after: ${answers === null ? 'NO' : 'yes'}; RSS ${proc.rssMb().toFixed(0)} MB`);
    }
  } finally {
    await proc.stop();
    setup.remove();
  }
}

if (only.has('d')) {
  const setup = await chaosSetup();
  try {
    const rounds = Number(values.rounds);
    out(`(d) kill -9: ${rounds} rounds of mixed load (3 SMTP sessions, 2 FTP uploaders, 2 NNTP posters), SIGKILL after a seeded 1.5-4 s, restart, check`);
    const r = await runChaos(setup, {
      rounds,
      seed,
      onRound: (i, f) => out(`    round ${i}: acknowledged so far mail ${f.mail.acked} (lost ${f.mail.lost}, duplicated ${f.mail.duplicated}), uploads ${f.uploads.acked} (lost ${f.uploads.lost}, wrong bytes ${f.uploads.wrongBytes}), articles ${f.articles.acked} (lost ${f.articles.lost}, duplicated ${f.articles.duplicated})`),
    });
    out(`    kill moments (ms after load start): ${r.killAfterMs.join(', ')}`);
    const bad = r.mail.lost + r.mail.duplicated + r.uploads.lost + r.uploads.wrongBytes + r.articles.lost + r.articles.duplicated;
    out(`    result: ${bad === 0 ? 'nothing acknowledged lost or duplicated' : `${bad} PROBLEMS`}`);
    await r.proc.stop();
  } finally {
    setup.remove();
  }
}
killAll();
