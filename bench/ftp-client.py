#!/usr/bin/env python3
"""Bulk FTP client for bench/ftp.ts's bulk mode: one STOR or RETR of a big file, timed from the transfer
command (EPSV, data connect, STOR/RETR, 150) to its 226, login excluded; the same client drives Gatehouse and
vsftpd, and does as little as a client can so that it is not what bounds the figure. ftplib speaks the control
dialogue; the data connection is driven directly:
- STOR: `sendall` of one in-memory block (1 MiB, or BENCH_FTP_BLOCK_KIB) over and over: the fastest measured
  (3,700–4,400 MiB/s into a sink that discards, see bench/ftp-bulk.ts).
- plain STOR with SOURCE (a file of MIB MiB, read once before the clock starts so that it is in the page cache):
  os.sendfile on a blocking socket, one call for the whole file. Zero copy on the sending side, yet about half as
  fast over loopback here (the receiver copies from 200 MiB of page cache instead of a block in the CPU's cache).
- RETR: 1 MiB `recv_into` one reused buffer.
FTPS: the data connection resumes the control connection's TLS session (vsftpd's require_ssl_reuse; Python's
ftplib does not do that by itself).

  ftp-client.py HOST PORT USER PASSWORD tls|plain stor|retr REMOTE_NAME MIB [SOURCE]
Prints one line: seconds bytes client-CPU-ms (user + system of this process during the timed part)
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
    source = sys.argv[9] if len(sys.argv) > 9 else '-'
    src_fd = None
    if op == 'stor' and mode == 'plain' and source != '-':
        src_fd = os.open(source, os.O_RDONLY)
        if os.fstat(src_fd).st_size != mib * BLOCK:
            sys.exit(f'{source}: not {mib} MiB')
        # warm: every page of the source in the page cache before the clock starts
        buf = bytearray(BLOCK)
        while os.readv(src_fd, [buf]) > 0:
            pass
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
        # STOR's sendall block (KiB); the default 1 MiB
        sblock = int(os.environ.get('BENCH_FTP_BLOCK_KIB', '1024')) * 1024
        if (mib * BLOCK) % sblock:
            sys.exit('BENCH_FTP_BLOCK_KIB must divide the size')
        block = memoryview(os.urandom(sblock))
        t0 = time.perf_counter()
        c0 = time.process_time()
        conn = ftp.transfercmd(f'STOR {name}')
        if src_fd is not None:
            # blocking socket: one sendfile call moves the whole file unless interrupted; loop for the rest
            conn.settimeout(None)
            while total < mib * BLOCK:
                n = os.sendfile(conn.fileno(), src_fd, total, mib * BLOCK - total)
                if n == 0:
                    sys.exit('sendfile: source ended early')
                total += n
        else:
            for _ in range(mib * BLOCK // sblock):
                conn.sendall(block)
                total += sblock
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
        conn.close()
        ftp.voidresp()
        secs = time.perf_counter() - t0
        cpu = time.process_time() - c0
    else:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        t0 = time.perf_counter()
        c0 = time.process_time()
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
        cpu = time.process_time() - c0
    ftp.quit()
    if src_fd is not None:
        os.close(src_fd)
    print(f'{secs:.6f} {total} {cpu * 1000:.1f}')


if __name__ == '__main__':
    main()
