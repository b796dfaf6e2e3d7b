/*
 * A real INN (Debian inn2: innd, innfeed, nnrpd) for the peering tests, started privately: a temp folder owned by
 * `news` holds the whole tree (etc, db, spool, log, run), inn.conf is Debian's /etc/news/inn.conf with every path
 * and the port overridden into it, and every INN program runs as `news` with INNCONF pointing there. Nothing
 * under /etc is changed; the system's own innd (if any) is left alone.
 *
 *   innd    127.0.0.1:<port>        takes the feed from `peer.address` (incoming.conf), streaming allowed
 *   innfeed started by innd         feeds every article not already through `peer.name` to peer.port
 *                                   (newsfeeds: site <peer.name> excluded by its own name in Path)
 *   nnrpd   127.0.0.1:<readerPort>  readers and POST from 127.0.0.1 without a login (readers.conf)
 *
 * innd and nnrpd run in the foreground (-f) as children of the test, so their pids are known and a crash at
 * start-up shows its stderr (innd logs through syslog, which a test box may not run: the files under log/ can
 * stay empty). Call `stop()` in afterAll: ctlinnd shutdown, then bounded waits and SIGKILL by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../smtp/listener-client.js';

const BIN = '/usr/lib/news/bin';
const SYSTEM_CONF = '/etc/news/inn.conf';

function newsIds(): { uid: number; gid: number } | null {
  try {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('news:'));
    if (!line) return null;
    const f = line.split(':');
    return { uid: Number(f[2]), gid: Number(f[3]) };
  } catch {
    return null;
  }
}

const NEWS = newsIds();

/** innd can be run here: installed, a `news` user, and we are root (to become it). */
export const innAvailable = fs.existsSync(`${BIN}/innd`) && fs.existsSync(SYSTEM_CONF) && NEWS !== null && process.getuid?.() === 0;

export interface InnGroup {
  readonly name: string;
  /** the next article number INN gives in this group (to tell INN's numbering from the peer's) */
  readonly next?: number;
}

export interface InnOptions {
  /** INN's path name (pathhost): what it puts in front of Path and in Xref */
  readonly pathhost: string;
  readonly groups: readonly InnGroup[];
  /** the feed peer: its path name (the newsfeeds site, excluded when in Path), address and NNTP port */
  readonly peer: { readonly name: string; readonly address: string; readonly port: number };
  /** innd's port (default: a free one) */
  readonly port?: number;
  /**
   * Both ways with AUTHINFO: innd asks the peer for `password` (incoming.conf; innd ignores the user name),
   * innfeed logs in to the peer as `user` with it (innfeed.conf username / password).
   */
  readonly login?: { readonly user: string; readonly password: string };
}

/** inn.conf: the system file, each overridden key replaced where it stands (later duplicates dropped), the rest appended. */
function innConf(over: Record<string, string>): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const line of fs.readFileSync(SYSTEM_CONF, 'utf8').split('\n')) {
    const k = /^([A-Za-z0-9]+):/.exec(line)?.[1];
    if (k !== undefined && k in over) {
      if (!seen.has(k)) out.push(`${k}: ${over[k]}`);
      seen.add(k);
      continue;
    }
    out.push(line);
  }
  for (const [k, v] of Object.entries(over)) if (!seen.has(k)) out.push(`${k}: ${v}`);
  return `${out.join('\n')}\n`;
}

/** Read one greeting line from an NNTP port (bounded); null when nothing answers. */
function greeting(port: number, ms = 3000): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: string | null) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(null), ms);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\r\n');
      if (nl >= 0) {
        s.write('QUIT\r\n');
        done(buf.slice(0, nl));
      }
    });
    s.on('error', () => done(null));
    s.on('close', () => done(null));
  });
}

/** A live (not zombie) process: innfeed outlives innd and may be left unreaped by a container's init. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return false;
  }
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export class TestInn {
  private innd: ChildProcess | null = null;
  private nnrpd: ChildProcess | null = null;

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly readerPort: number,
    readonly pathhost: string,
  ) {}

  get conf(): string {
    return path.join(this.dir, 'etc', 'inn.conf');
  }

  static async start(opts: InnOptions): Promise<TestInn> {
    if (!innAvailable || !NEWS) throw new Error('INN cannot run here (needs inn2 installed, a news user, and root)');
    // the tree must be reachable by `news`: os.tmpdir() unless TMPDIR points somewhere it cannot enter
    const base = spawnSync('test', ['-x', os.tmpdir()], { uid: NEWS.uid, gid: NEWS.gid }).status === 0 ? os.tmpdir() : '/tmp';
    const dir = fs.mkdtempSync(path.join(base, 'gatehouse-inn-'));
    const inn = new TestInn(dir, opts.port ?? (await freePort()), await freePort(), opts.pathhost);
    try {
      inn.build(opts);
      await inn.launch();
    } catch (err) {
      await inn.stop();
      throw err;
    }
    return inn;
  }

  private build(opts: InnOptions): void {
    const d = this.dir;
    const sub = (...p: string[]) => path.join(d, ...p);
    for (const p of ['etc', 'etc/filter', 'db', 'log', 'run', 'http', 'spool/articles', 'spool/overview', 'spool/incoming/tmp', 'spool/incoming/bad', 'spool/outgoing', 'spool/archive', 'spool/innfeed']) {
      fs.mkdirSync(sub(p), { recursive: true });
    }
    const conf = innConf({
      pathhost: opts.pathhost,
      domain: opts.pathhost,
      server: '127.0.0.1',
      port: String(this.port),
      bindaddress: '127.0.0.1',
      nnrpdpostport: String(this.port),
      noreader: 'true',
      pathdb: sub('db'),
      pathetc: sub('etc'),
      pathrun: sub('run'),
      pathlog: sub('log'),
      pathhttp: sub('http'),
      pathfilter: sub('etc/filter'), // empty: no Perl/Python filter
      pathspool: sub('spool'),
      patharticles: sub('spool/articles'),
      pathoverview: sub('spool/overview'),
      pathincoming: sub('spool/incoming'),
      pathoutgoing: sub('spool/outgoing'),
      patharchive: sub('spool/archive'),
      pathtmp: sub('spool/incoming/tmp'),
      pgpverify: 'false',
      doinnwatch: 'false',
      status: '0',
      timer: '0',
      artcutoff: '0', // any Date is taken (tests may post old-dated articles)
      logipaddr: 'true',
      nnrpdloadlimit: '0',
    });
    const w = (f: string, text: string) => fs.writeFileSync(sub('etc', f), text);
    w('inn.conf', conf);
    w('storage.conf', 'method tradspool {\n  newsgroups: *\n  class: 0\n}\n');
    w('expire.ctl', '/remember/:11\n*:A:1:10:never\n');
    this.peerAddress = opts.peer.address;
    this.peerPassword = opts.login?.password ?? null;
    this.writeIncoming(true);
    w(
      'newsfeeds',
      [
        'ME:*,!junk,!control*/!local::',
        // the peer gets everything not already through it (its name in Path), handed to innfeed
        `${opts.peer.name}/${opts.peer.name}:*,!junk,!control*:Tm:innfeed!`,
        `innfeed!:!*:Tc,Wnm*:${BIN}/innfeed`,
        '',
      ].join('\n'),
    );
    w(
      'innfeed.conf',
      [
        `backlog-directory: ${sub('spool/innfeed')}`,
        `pid-file: ${sub('run/innfeed.pid')}`,
        'status-file: innfeed.status',
        'log-file: innfeed.log',
        'initial-reconnect-time: 1',
        'max-reconnect-time: 5',
        'backlog-newfile-period: 1',
        'backlog-rotate-period: 1',
        // hold a burst in memory: past this many articles waiting for a slow peer innfeed spools the rest to its
        // backlog file and feeds that back only later (on a loaded box a burst of 100 was still there 2 min later)
        'host-queue-highwater: 1000',
        `peer ${opts.peer.name} {`,
        `  ip-name: ${opts.peer.address}`,
        `  port-number: ${opts.peer.port}`,
        '  streaming: true',
        '  initial-connections: 1',
        '  max-connections: 1',
        ...(opts.login ? [`  username: "${opts.login.user}"`, `  password: "${opts.login.password}"`] : []),
        '}',
        '',
      ].join('\n'),
    );
    w('readers.conf', 'auth "local" {\n  hosts: "127.0.0.1"\n  default: "<local>"\n}\naccess "local" {\n  users: "<local>"\n  newsgroups: "*"\n  access: RPA\n}\n');
    const num = (n: number) => String(n).padStart(10, '0');
    const active = ['control 0000000000 0000000001 n', 'control.cancel 0000000000 0000000001 n', 'junk 0000000000 0000000001 n'];
    for (const g of opts.groups) {
      const next = g.next ?? 1;
      active.push(`${g.name} ${num(next - 1)} ${num(next)} y`);
    }
    fs.writeFileSync(sub('db/active'), `${active.join('\n')}\n`);
    fs.writeFileSync(sub('db/active.times'), '');
    fs.writeFileSync(sub('db/newsgroups'), opts.groups.map((g) => `${g.name}\tTest group.\n`).join(''));
    fs.writeFileSync(sub('db/history'), '');
    const chown = spawnSync('chown', ['-R', `${NEWS!.uid}:${NEWS!.gid}`, d]);
    if (chown.status !== 0) throw new Error(`chown: ${String(chown.stderr)}`);
    this.run('makedbz', ['-i', '-o', '-s', '1000', '-f', sub('db/history')]);
  }

  private peerAddress = '';
  private peerPassword: string | null = null;

  private writeIncoming(streaming: boolean): void {
    const file = path.join(this.dir, 'etc', 'incoming.conf');
    const password = this.peerPassword === null ? '' : `  password: "${this.peerPassword}"\n`;
    fs.writeFileSync(file, `streaming: ${streaming}\nmax-connections: 8\n\npeer feedpeer {\n  hostname: "${this.peerAddress}"\n${password}}\n`, { mode: 0o640 });
    fs.chownSync(file, NEWS!.uid, NEWS!.gid);
  }

  /** Allow or refuse streaming (CHECK/TAKETHIS) from the peer: incoming.conf rewritten and reloaded. */
  setStreaming(on: boolean): void {
    this.writeIncoming(on);
    this.ctl('reload', 'incoming.conf', 'peering test');
  }

  private env(): NodeJS.ProcessEnv {
    return { PATH: `${BIN}:/usr/bin:/bin`, HOME: this.dir, INNCONF: this.conf, LANG: 'C' };
  }

  /** Run an INN program as `news` (bounded); its stdout. Throws on a non-zero exit. */
  run(prog: string, args: readonly string[], timeoutMs = 20_000): string {
    const r = this.tryRun(prog, args, timeoutMs);
    if (r.status !== 0) throw new Error(`${prog} ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  tryRun(prog: string, args: readonly string[], timeoutMs = 20_000): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(path.join(BIN, prog), args, { uid: NEWS!.uid, gid: NEWS!.gid, env: this.env(), cwd: this.dir, timeout: timeoutMs, encoding: 'latin1' });
    return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
  }

  private daemon(prog: string, args: readonly string[], out: string): ChildProcess {
    const fd = fs.openSync(path.join(this.dir, out), 'a');
    try {
      return spawn(path.join(BIN, prog), args, { uid: NEWS!.uid, gid: NEWS!.gid, env: this.env(), cwd: this.dir, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
  }

  private async launch(): Promise<void> {
    this.innd = this.daemon('innd', ['-f'], 'innd.out');
    await this.until('innd', this.innd, this.port, /^200 /);
    this.nnrpd = this.daemon('nnrpd', ['-D', '-f', '-b', '127.0.0.1', '-p', String(this.readerPort)], 'nnrpd.out');
    await this.until('nnrpd', this.nnrpd, this.readerPort, /^20[01] /);
  }

  private async until(name: string, child: ChildProcess, port: number, ok: RegExp): Promise<void> {
    const deadline = Date.now() + 30_000;
    let last: string | null = null;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) at start-up:\n${this.logs()}`);
      last = await greeting(port);
      if (last && ok.test(last)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${name} did not greet on ${port} within 30 s (last: ${last}):\n${this.logs()}`);
  }

  /** ctlinnd (bounded). */
  ctl(...args: string[]): string {
    return this.run('ctlinnd', ['-t', '15', ...args]);
  }

  /** The storage token of a Message-ID in INN's history, or null. */
  history(id: string): string | null {
    const r = this.tryRun('grephistory', ['-e', id]);
    return r.status === 0 && r.stdout.trim().startsWith('@') ? r.stdout.trim() : null;
  }

  /** The article as INN stored it (through its history and storage manager), or null. */
  article(id: string): string | null {
    const token = this.history(id);
    if (!token) return null;
    const r = this.tryRun('sm', [token]);
    return r.status === 0 ? r.stdout : null;
  }

  /** Everything INN wrote that helps tell why something failed. */
  logs(): string {
    const out: string[] = [];
    for (const f of ['innd.out', 'nnrpd.out', 'log/errlog', 'log/innfeed.log', 'log/innfeed.status', 'log/news']) {
      try {
        const text = fs.readFileSync(path.join(this.dir, f), 'latin1');
        if (text.trim()) out.push(`== ${f}\n${text.slice(-2500)}`);
      } catch {
        /* not written */
      }
    }
    return out.join('\n');
  }

  private innfeedPid(): number | null {
    try {
      const pid = Number(fs.readFileSync(path.join(this.dir, 'run', 'innfeed.pid'), 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return null;
      // the pid file is ours; make sure the pid still is an innfeed (not a reused number)
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('innfeed') ? pid : null;
    } catch {
      return null;
    }
  }

  async stop(): Promise<void> {
    const feeder = this.innfeedPid();
    if (this.nnrpd && this.nnrpd.exitCode === null && this.nnrpd.signalCode === null) {
      this.nnrpd.kill('SIGTERM');
      if (!(await waitExit(this.nnrpd, 5000))) this.nnrpd.kill('SIGKILL');
    }
    if (this.innd && this.innd.exitCode === null && this.innd.signalCode === null) {
      this.tryRun('ctlinnd', ['-t', '10', 'shutdown', 'test done'], 15_000);
      if (!(await waitExit(this.innd, 10_000))) {
        this.innd.kill('SIGKILL');
        await waitExit(this.innd, 5000);
      }
    }
    if (feeder !== null) {
      // innfeed ends when innd closes its channel; a bounded wait, then by pid
      const until = Date.now() + 5000;
      while (alive(feeder) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      if (alive(feeder) && this.innfeedPid() === feeder) process.kill(feeder, 'SIGKILL');
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
