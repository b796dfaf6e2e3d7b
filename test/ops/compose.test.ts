import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from '../helpers/cli.js';

// No Docker engine runs on this machine or in CI, so the compose file is checked for structure, not run.
describe('docker-compose.yml', () => {
  const compose = parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { build?: string; user?: string; volumes?: string[]; ports?: string[]; cap_drop?: string[] }>;
    volumes?: Record<string, unknown>;
  };
  const svc = compose.services.gatehouse!;

  it('has a gatehouse service built from the Dockerfile, running as a non-root user', () => {
    expect(svc.build).toBe('.');
    expect(svc.user).toBe('gatehouse');
    expect(svc.cap_drop).toContain('ALL');
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^USER gatehouse$/m);
    // compiled JavaScript in one process (PID 1 gets the signals), no TypeScript loader
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/main\.js"\]$/m);
    expect(dockerfile).not.toMatch(/tsx/);
  });

  it('mounts config and state as volumes', () => {
    expect(svc.volumes!.some((v) => v.endsWith(':/etc/gatehouse:ro'))).toBe(true);
    expect((svc as { environment?: Record<string, string> }).environment?.GATEHOUSE_CONFIG).toBe('/etc/gatehouse/profiles/container.yaml');
    expect(fs.existsSync(path.join(ROOT, 'config/profiles/container.yaml'))).toBe(true);
    expect(svc.volumes!.some((v) => v.startsWith('gatehouse-state:/var/lib/gatehouse'))).toBe(true);
    expect(compose.volumes).toHaveProperty('gatehouse-state');
  });

  it('publishes the three service ports and the passive FTP range, on loopback', () => {
    const ports = svc.ports!;
    for (const p of ['2525:2525', '2121:2121', '1119:1119', '30000-30099:30000-30099']) expect(ports).toContain(`127.0.0.1:${p}`);
    expect(ports.every((p) => p.startsWith('127.0.0.1:'))).toBe(true);
  });
});

describe('contrib/gatehouse.service', () => {
  const unit = fs.readFileSync(path.join(ROOT, 'contrib/gatehouse.service'), 'utf8');
  it('runs the compiled JavaScript in one process', () => {
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node dist\/cli\/main\.js start/m);
    expect(unit).not.toMatch(/tsx/);
  });
  it.each(['ProtectSystem=strict', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'ReadWritePaths=/var/lib/gatehouse', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'User=gatehouse'])(
    'has %s',
    (line) => {
      expect(unit.split('\n')).toContain(line);
    },
  );
});

// Issue 17: two instances behind HAProxy, Valkey beside them. Structure only (no Docker engine here); the
// same HAProxy shape runs for real in test/net/haproxy.test.ts.
describe('docker-compose.balanced.yml and contrib/haproxy/haproxy.cfg', () => {
  type Svc = { image?: string; build?: string; user?: string; volumes?: string[]; ports?: string[]; environment?: Record<string, string>; networks?: Record<string, { ipv4_address: string }> };
  const compose = parse(fs.readFileSync(path.join(ROOT, 'docker-compose.balanced.yml'), 'utf8'), { merge: true }) as { services: Record<string, Svc> };
  const cfgText = fs.readFileSync(path.join(ROOT, 'contrib/haproxy/haproxy.cfg'), 'utf8');
  const ipOf = (s: Svc) => Object.values(s.networks ?? {})[0]!.ipv4_address;
  const profile = (name: string) => parse(fs.readFileSync(path.join(ROOT, 'config/profiles', name), 'utf8')) as Record<string, { proxy_protocol?: { from: string[] }; passive?: { ports: string } }>;

  it('runs two non-root instances with their own state and a shared volume, HAProxy and Valkey', () => {
    const { 'gatehouse-a': a, 'gatehouse-b': b, haproxy, valkey } = compose.services;
    for (const s of [a!, b!]) {
      expect(s.user).toBe('gatehouse');
      expect(s.volumes).toContain('gatehouse-shared:/srv/gatehouse-shared');
    }
    expect(a!.volumes).toContain('gatehouse-a-state:/var/lib/gatehouse');
    expect(b!.volumes).toContain('gatehouse-b-state:/var/lib/gatehouse');
    expect(haproxy!.volumes).toContain('./contrib/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro');
    expect(haproxy!.ports!.every((p) => p.startsWith('127.0.0.1:'))).toBe(true);
    expect(valkey!.image).toMatch(/^valkey\//);
    for (const file of ['balanced-a.yaml', 'balanced-b.yaml']) {
      const store = (profile(file) as unknown as { state_store: { url: string } }).state_store;
      expect(new URL(store.url).hostname).toBe(ipOf(valkey!));
    }
  });

  it('each profile lists exactly HAProxy as its PROXY peer, and HAProxy sends each passive slice to its instance', () => {
    const hap = ipOf(compose.services.haproxy!);
    for (const [svc, file] of [['gatehouse-a', 'balanced-a.yaml'], ['gatehouse-b', 'balanced-b.yaml']] as const) {
      const s = compose.services[svc]!;
      expect(s.environment!.GATEHOUSE_CONFIG).toBe(`/etc/gatehouse/profiles/${file}`);
      const p = profile(file);
      for (const k of ['smtp', 'ftp', 'nntp']) expect(p[k]!.proxy_protocol!.from).toEqual([`${hap}/32`]);
      const ports = p.ftp!.passive!.ports;
      // a frontend binding exactly this slice, whose server is this instance's address without a port
      const slice = new RegExp(`bind :${ports}\\n\\s+default_backend (\\S+)`).exec(cfgText);
      expect(slice, `no frontend for ${ports}`).not.toBeNull();
      expect(cfgText).toMatch(new RegExp(`backend ${slice![1]}\\n\\s+server \\S+ ${ipOf(s).replace(/\./g, '\\.')} send-proxy-v2\\n`));
    }
    expect([...cfgText.matchAll(/^\s+server .*$/gm)].every((m) => m[0].includes('send-proxy-v2'))).toBe(true);
  });

  it('haproxy -c accepts the config', () => {
    const r = spawnSync('haproxy', ['-c', '-f', path.join(ROOT, 'contrib/haproxy/haproxy.cfg')], { encoding: 'utf8' });
    if (r.error) return; // haproxy not installed: .ci/run installs it
    expect(r.status, r.stderr).toBe(0);
  });
});
