/*
 * TLS material shared by all three listeners: the configured certificate and key, or a self-signed pair
 * made on first start in <state_dir>/tls (key 0600) and reused afterwards. A pair that cannot be read or
 * whose key does not match the certificate stops the start with a clear error.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { GatehouseError } from '../errors.js';
import { ensureDir, writeFileDurableSync } from './atomic.js';
import type { Config } from '../config/load.js';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly selfSigned: boolean;
  readonly fingerprint256: string;
  readonly minVersion: tls.SecureVersion;
  readonly context: tls.SecureContext;
}

/**
 * Server options every listener uses: TLS ≥ 1.2 (configurable to 1.3), modern ciphers only, and no
 * renegotiation (TLS 1.2 lets a client ask for a new handshake as often as it likes, costing the server a
 * full key exchange each time: testssl.sh's "client-initiated renegotiation" DoS finding; Postfix refuses it
 * too). Node would allow three per ten minutes; OpenSSL's SSL_OP_NO_RENEGOTIATION refuses every one.
 */
export function serverTlsOptions(m: TlsMaterial): tls.TlsOptions {
  return {
    key: m.key,
    cert: m.cert,
    minVersion: m.minVersion,
    ciphers: 'ECDHE+AESGCM:ECDHE+CHACHA20:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
    honorCipherOrder: true,
    secureOptions: crypto.constants.SSL_OP_NO_RENEGOTIATION,
  };
}

function check(cert: string, key: string, where: string): crypto.X509Certificate {
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(cert);
  } catch (err) {
    throw new GatehouseError('GH_ERR_TLS', `${where}: certificate is not valid PEM (${(err as Error).message})`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    throw new GatehouseError('GH_ERR_TLS', `${where}: key is not a valid PEM private key (${(err as Error).message})`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new GatehouseError('GH_ERR_TLS', `${where}: the key does not match the certificate`);
  return x509;
}

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new GatehouseError('GH_ERR_TLS', `${file}: cannot read TLS ${what} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

export async function loadTls(config: Config): Promise<TlsMaterial> {
  const minVersion = config.tls.min_version;
  let certFile = config.paths.tlsCert;
  let keyFile = config.paths.tlsKey;
  let selfSigned = false;
  if (certFile === null || keyFile === null) {
    selfSigned = true;
    certFile = path.join(config.paths.tlsDir, 'selfsigned.crt');
    keyFile = path.join(config.paths.tlsDir, 'selfsigned.key');
    if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
      ensureDir(config.paths.tlsDir);
      const notAfter = new Date(Date.now() + 825 * 24 * 3600 * 1000);
      // loaded only here, on the first start without a pair: it is a large module the daemon never needs again
      const { default: selfsigned } = await import('selfsigned');
      const pems = await selfsigned.generate([{ name: 'commonName', value: config.hostname }], {
        keySize: 2048,
        algorithm: 'sha256',
        notAfterDate: notAfter,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'subjectAltName', altNames: [{ type: 2, value: config.hostname }, { type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
        ],
      });
      writeFileDurableSync(keyFile, pems.private, 0o600);
      writeFileDurableSync(certFile, pems.cert, 0o644);
    }
  }
  const cert = read(certFile, 'certificate');
  const key = read(keyFile, 'key');
  const x509 = check(cert, key, `${certFile} + ${keyFile}`);
  const context = tls.createSecureContext({ key, cert, minVersion });
  return { cert, key, certFile, keyFile, selfSigned, fingerprint256: x509.fingerprint256, minVersion, context };
}
