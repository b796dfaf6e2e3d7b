#!/usr/bin/env python3
"""A minimal FTP upload sink for bench/ftp-bulk.ts: what the same client and this box reach with next to no
server. Not a server for anything else: one client at a time, any USER/PASS, TYPE, PASV/EPSV, STOR, QUIT.

  ftp-floor.py DIR durable|discard
durable: the upload is received in a loop of 1 MiB recv_into + write (C speed) into a temp file in DIR while a
second thread fdatasyncs it every 4 MiB (Gatehouse's design), then a last fdatasync, rename to its name, fsync
of DIR, then 226 (Gatehouse's durability contract). discard: received and dropped (the client + loopback ceiling).
Prints the listening port on stdout, then serves until killed.
"""
import os
import socket
import sys
import threading

BLOCK = 1024 * 1024
# background fdatasync cadence (Gatehouse's SYNC_EVERY in src/ftp/jail-fs.ts)
SYNC_EVERY = 4 * 1024 * 1024


def serve_one(ctrl, folder, mode):
    f = ctrl.makefile('rb')
    ctrl.sendall(b'220 floor\r\n')
    data_l = None
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    while True:
        line = f.readline()
        if not line:
            return
        cmd, _, arg = line.decode('latin-1').strip().partition(' ')
        cmd = cmd.upper()
        if cmd == 'USER':
            ctrl.sendall(b'331 any\r\n')
        elif cmd == 'PASS':
            ctrl.sendall(b'230 in\r\n')
        elif cmd == 'TYPE':
            ctrl.sendall(b'200 ok\r\n')
        elif cmd in ('PASV', 'EPSV'):
            if data_l:
                data_l.close()
            data_l = socket.socket()
            data_l.bind(('127.0.0.1', 0))
            data_l.listen(1)
            p = data_l.getsockname()[1]
            if cmd == 'EPSV':
                ctrl.sendall(f'229 Entering Extended Passive Mode (|||{p}|)\r\n'.encode())
            else:
                ctrl.sendall(f'227 Entering Passive Mode (127,0,0,1,{p >> 8},{p & 255})\r\n'.encode())
        elif cmd == 'STOR' and data_l:
            ctrl.sendall(b'150 go\r\n')
            conn, _ = data_l.accept()
            data_l.close()
            data_l = None
            if mode == 'discard':
                while conn.recv_into(view):
                    pass
            else:
                temp = os.path.join(folder, '.floor-part')
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                # Gatehouse's design at C speed: a background thread fdatasyncs once SYNC_EVERY more bytes are
                # written (one at a time), so that the last fdatasync only has the tail to flush
                written = [0]
                more = threading.Condition()
                done = [False]

                def syncer():
                    synced = 0
                    while True:
                        with more:
                            while not done[0] and written[0] - synced < SYNC_EVERY:
                                more.wait()
                            if done[0]:
                                return
                            synced = written[0]
                        os.fdatasync(fd)

                t = threading.Thread(target=syncer)
                t.start()
                while True:
                    n = conn.recv_into(view)
                    if n == 0:
                        break
                    os.write(fd, view[:n])
                    with more:
                        written[0] += n
                        more.notify()
                with more:
                    done[0] = True
                    more.notify()
                t.join()
                os.fdatasync(fd)
                os.close(fd)
                final = os.path.join(folder, os.path.basename(arg))
                # the replaced file is held open across the rename and let go after the 226, as Gatehouse does
                try:
                    old = os.open(final, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    old = None
                os.rename(temp, final)
                d = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(d)
                os.close(d)
            conn.close()
            ctrl.sendall(b'226 stored\r\n')
            if mode != 'discard' and old is not None:
                os.close(old)
        elif cmd == 'QUIT':
            ctrl.sendall(b'221 bye\r\n')
            return
        else:
            ctrl.sendall(b'502 no\r\n')


def main():
    folder, mode = sys.argv[1], sys.argv[2]
    ls = socket.socket()
    ls.bind(('127.0.0.1', 0))
    ls.listen(4)
    print(ls.getsockname()[1], flush=True)
    while True:
        ctrl, _ = ls.accept()
        # replies go out at once, as the servers' do (else the 226 waits ~40 ms behind the delayed ACK of the 150)
        ctrl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            serve_one(ctrl, folder, mode)
        except OSError:
            pass
        finally:
            ctrl.close()


if __name__ == '__main__':
    main()
