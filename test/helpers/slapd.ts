/*
 * A real OpenLDAP slapd for the directory tests: started privately on loopback ports with a throwaway
 * slapd.conf, test CA and MDB database in a temp folder; never touches /etc/ldap or a system slapd.
 * LDAPS and StartTLS with a certificate signed by a test CA (openssl), the `memberof` overlay, and a test
 * schema carrying IIS's `msIIS-FTPRoot` / `msIIS-FTPDir` attribute types. Call `stop()` in afterAll.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../smtp/listener-client.js';

export const SUFFIX = 'dc=example,dc=test';
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PW = 'admin-secret-pw';
export const SERVICE_DN = `cn=gatehouse,ou=services,${SUFFIX}`;
export const SERVICE_PW = 'service-secret-pw';

export interface DirUser {
  readonly uid: string;
  readonly password: string;
  readonly groups?: readonly string[];
  /** msIIS-FTPRoot / msIIS-FTPDir */
  readonly ftpRoot?: string;
  readonly ftpDir?: string;
  readonly homeDirectory?: string;
}

export interface Slapd {
  readonly dir: string;
  readonly port: number;
  readonly tlsPort: number;
  /** PEM file of the CA that signed the server certificate */
  readonly caFile: string;
  /** PEM file of an unrelated CA (a certificate mismatch) */
  readonly otherCaFile: string;
  readonly ldapUrl: string;
  readonly ldapsUrl: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  ldif(text: string): void;
}

const SCHEMA = `
attributetype ( 1.3.6.1.4.1.99999.16.1.1 NAME 'msIIS-FTPRoot'
  DESC 'IIS FTP user isolation: root folder of the home'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.16.1.2 NAME 'msIIS-FTPDir'
  DESC 'IIS FTP user isolation: home folder below msIIS-FTPRoot'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.16.1.3 NAME 'gatehouseHome'
  DESC 'test: a single home folder attribute'
  EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.16.2.1 NAME 'gatehouseFtpUser' SUP top AUXILIARY
  MAY ( msIIS-FTPRoot $ msIIS-FTPDir $ gatehouseHome ) )
`;


function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCerts(dir: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Gatehouse Test CA', '-keyout', 'ca.key', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Some Other CA', '-keyout', 'other.key', '-out', 'other-ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'], dir);
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem'], dir);
}

function groupLdif(cn: string, members: readonly string[]): string {
  return [`dn: cn=${cn},ou=groups,${SUFFIX}`, 'objectClass: groupOfNames', `cn: ${cn}`, ...members.map((m) => `member: uid=${m},ou=people,${SUFFIX}`), ''].join('\n');
}

export function userLdif(u: DirUser): string {
  const lines = [
    `dn: uid=${u.uid},ou=people,${SUFFIX}`,
    'objectClass: inetOrgPerson',
    'objectClass: gatehouseFtpUser',
    `uid: ${u.uid}`,
    `cn: ${u.uid}`,
    `sn: ${u.uid}`,
    `userPassword: ${u.password}`,
  ];
  if (u.ftpRoot) lines.push(`msIIS-FTPRoot: ${u.ftpRoot}`);
  if (u.ftpDir) lines.push(`msIIS-FTPDir: ${u.ftpDir}`);
  if (u.homeDirectory) lines.push(`gatehouseHome: ${u.homeDirectory}`);
  return `${lines.join('\n')}\n`;
}

/** Start slapd with the given users; groups are made from the users' `groups`. */
export async function startSlapd(users: readonly DirUser[]): Promise<Slapd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-slapd-'));
  fs.mkdirSync(path.join(dir, 'db'));
  makeCerts(dir);
  fs.writeFileSync(path.join(dir, 'gatehouse-test.schema'), SCHEMA);
  const conf = `
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include ${dir}/gatehouse-test.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile ${dir}/slapd.pid
argsfile ${dir}/slapd.args
TLSCACertificateFile ${dir}/ca.pem
TLSCertificateFile ${dir}/server.pem
TLSCertificateKeyFile ${dir}/server.key
database mdb
maxsize 10485760
suffix "${SUFFIX}"
rootdn "${ADMIN_DN}"
rootpw ${ADMIN_PW}
directory ${dir}/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by * read
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true
`;
  fs.writeFileSync(path.join(dir, 'slapd.conf'), conf);
  const port = await freePort();
  const tlsPort = await freePort();
  let child: ChildProcess | null = null;
  const ldapUrl = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${tlsPort}`;

  const s: Slapd = {
    dir,
    port,
    tlsPort,
    caFile: path.join(dir, 'ca.pem'),
    otherCaFile: path.join(dir, 'other-ca.pem'),
    ldapUrl,
    ldapsUrl,
    async start() {
      const proc = spawn('/usr/sbin/slapd', ['-d', '0', '-f', path.join(dir, 'slapd.conf'), '-h', `${ldapUrl}/ ${ldapsUrl}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = proc;
      let stderr = '';
      proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`slapd exited ${proc.exitCode}: ${stderr}`);
        const up = await new Promise<boolean>((resolve) => {
          const c = net.connect(tlsPort, '127.0.0.1', () => {
            c.destroy();
            resolve(true);
          });
          c.on('error', () => resolve(false));
        });
        if (up) return;
        if (Date.now() > deadline) throw new Error(`slapd did not come up: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      const proc = child;
      child = null;
      if (!proc || proc.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    ldif(text: string) {
      execFileSync('/usr/bin/ldapadd', ['-x', '-H', ldapUrl, '-D', ADMIN_DN, '-w', ADMIN_PW], { input: text, stdio: ['pipe', 'pipe', 'pipe'] });
    },
  };
  await s.start();
  const groups = new Map<string, string[]>();
  for (const u of users) for (const g of u.groups ?? []) groups.set(g, [...(groups.get(g) ?? []), u.uid]);
  s.ldif(
    [
      `dn: ${SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n`,
      `dn: ou=people,${SUFFIX}\nobjectClass: organizationalUnit\nou: people\n`,
      `dn: ou=groups,${SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n`,
      `dn: ou=services,${SUFFIX}\nobjectClass: organizationalUnit\nou: services\n`,
      `dn: ${SERVICE_DN}\nobjectClass: person\ncn: gatehouse\nsn: service\nuserPassword: ${SERVICE_PW}\n`,
      ...users.map(userLdif),
      ...[...groups].map(([cn, members]) => groupLdif(cn, members)),
    ].join('\n'),
  );
  return s;
}

/** Stop and remove the folder. */
export async function destroySlapd(s: Slapd | undefined): Promise<void> {
  if (!s) return;
  await s.stop();
  fs.rmSync(s.dir, { recursive: true, force: true });
}
