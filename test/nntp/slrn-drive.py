# Drive slrn 1.0 on a pseudo-terminal for test/nntp/slrn.test.ts: connect over NNTPS (snews://) with the
# credentials of ~/.slrnrc (nnrpaccess), wait for the group list, press P (post) and read the prompt, quit.
# Prints the screen text (escape sequences removed), then the --debug protocol log. Every wait is bounded.
import os, pty, re, select, shutil, signal, sys, tempfile, time

port, password = sys.argv[1], sys.argv[2]
home = tempfile.mkdtemp(prefix='gatehouse-slrn-')
try:
    with open(os.path.join(home, '.slrnrc'), 'w') as f:
        f.write(f'set hostname "gatehouse.test"\nset username "alice"\nset realname "Alice"\n'
                f'nnrpaccess "snews://127.0.0.1:{port}" "alice" "{password}"\n')
    with open(os.path.join(home, 'newsrc'), 'w') as f:
        f.write('public.news:\n')
    env = dict(os.environ, HOME=home, TERM='vt100', COLUMNS='120', LINES='40')
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe('slrn', ['slrn', '-h', f'snews://127.0.0.1:{port}', '-f', os.path.join(home, 'newsrc'),
                            '--debug', os.path.join(home, 'debug.log')], env)
    screen = b''

    def read_until(pattern, timeout):
        global screen
        end = time.time() + timeout
        while time.time() < end:
            if re.search(pattern, screen):
                return True
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return False
                if not data:
                    return False
                screen += data
        return bool(re.search(pattern, screen))

    read_until(rb'Checking news', 20)
    read_until(rb'(?!x)x', 3)  # let the group list settle (the status line arrives in pieces)
    os.write(fd, b'P')
    read_until(rb'Newsgroup:|want to post|[Pp]osting (is )?not allowed', 10)
    os.write(fd, b'\x07')
    time.sleep(0.3)
    os.write(fd, b'q')
    time.sleep(0.5)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
    print(re.sub(rb'\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-B]', b' ', screen).decode('latin1'))
    print('----DEBUG----')
    try:
        with open(os.path.join(home, 'debug.log')) as f:
            print(f.read())
    except OSError as e:
        print(e)
finally:
    shutil.rmtree(home, ignore_errors=True)
