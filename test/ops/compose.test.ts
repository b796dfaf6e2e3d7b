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
