#!/usr/bin/env python3
"""Bulk FTP client for bench/ftp.ts's bulk mode: one STOR or RETR of a big file, timed from the transfer
command (EPSV, data connect, STOR/RETR, 150) to its 226, login excluded. Large buffers (1 MiB sendall /
recv_into, no per-block Python work) so that the client is not what bounds the figure; the same client drives
Gatehouse and vsftpd. FTPS: the data connection resumes the control connection's TLS session (vsftpd's
require_ssl_reuse; Python's ftplib does not do that by itself).

  ftp-client.py HOST PORT USER PASSWORD tls|plain stor|retr REMOTE_NAME MIB
Prints one line: seconds bytes
"""
import ftplib
import os
import ssl
import sys
import time

BLOCK = 1024 * 1024


class ResumingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def main():
    host, port, user, password, mode, op, name, mib = sys.argv[1:9]
    mib = int(mib)
    if mode == 'tls':
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ftp = ResumingFTP_TLS(context=ctx, timeout=120)
        ftp.connect(host, int(port))
        ftp.auth()
        ftp.login(user, password)
        ftp.prot_p()
    else:
        ftp = ftplib.FTP(timeout=120)
        ftp.connect(host, int(port))
        ftp.login(user, password)
    ftp.voidcmd('TYPE I')
    total = 0
    if op == 'stor':
        block = memoryview(os.urandom(BLOCK))
        t0 = time.perf_counter()
        conn = ftp.transfercmd(f'STOR {name}')
        for _ in range(mib):
            conn.sendall(block)
            total += BLOCK
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
        conn.close()
        ftp.voidresp()
        secs = time.perf_counter() - t0
    else:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        t0 = time.perf_counter()
        conn = ftp.transfercmd(f'RETR {name}')
        while True:
            n = conn.recv_into(view)
            if n == 0:
                break
            total += n
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.unwrap()
            except (ssl.SSLError, OSError):
                pass
        conn.close()
        ftp.voidresp()
        secs = time.perf_counter() - t0
    ftp.quit()
    print(f'{secs:.6f} {total}')


if __name__ == '__main__':
    main()
