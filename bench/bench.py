#!/usr/bin/env python3
"""Peer benchmark driver: direct vs skproxy (kernel and user-space paths) vs HAProxy vs nginx.

Run it through bench/run.sh, which raises the descriptor limit, makes the temp dir and owns the EXIT
trap that stops anything this script started (every PID is written to --pidfile as it is spawned).
Rows are run interleaved inside each repetition so slow drift on the host touches every row alike.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ALL_ROWS = ['direct', 'skproxy-sockmap', 'skproxy-userspace', 'skproxy-auto', 'haproxy', 'nginx',
            'skproxy-http', 'skproxy-http-splice', 'haproxy-http', 'nginx-http']
ROW_TITLES = {'direct': 'direct (no proxy)', 'skproxy-sockmap': 'skproxy sockmap (kernel)',
              'skproxy-userspace': 'skproxy userspace', 'skproxy-auto': 'skproxy auto',
              'haproxy': 'HAProxy (mode tcp)', 'nginx': 'nginx (stream)',
              'skproxy-http': 'skproxy auto, http listener', 'haproxy-http': 'HAProxy (mode http)',
              'nginx-http': 'nginx (http proxy)',
              'skproxy-http-splice': 'skproxy auto, http listener, no upstream pool'}
# The -http rows put an L7 listener on the HTTP route only (skproxy protocol: http, HAProxy mode http,
# nginx's http module); their other routes stay as in the plain rows, so only the wrk columns differ.
HOST = '127.0.0.1'
# Below the ephemeral range (32768+), so no outgoing connection can be sitting on them.
BACKEND_PORTS = {'iperf': 27001, 'echo': 27002, 'once': 27003, 'http': 27004}
ROUTES = list(BACKEND_PORTS)  # every proxy forwards listen port ROW_BASE + 1.. to these, in this order
ROW_BASE = {'direct': 27000, 'haproxy': 27020, 'nginx': 27030, 'skproxy-sockmap': 27040,
            'skproxy-userspace': 27050, 'skproxy-auto': 27060, 'skproxy-http': 27070, 'haproxy-http': 27080,
            'nginx-http': 27090, 'skproxy-http-splice': 27140}
# --baseline PATH: each skproxy row asked for is also run with another binary, right after it in every
# repetition, so an A/B of two builds shares one noisy run.
BASELINE_ROWS = {'skproxy-sockmap-baseline': 27100, 'skproxy-userspace-baseline': 27110,
                 'skproxy-auto-baseline': 27120, 'skproxy-http-baseline': 27130}
NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'
HTTP_BODY = b'0123456789abcdef' * 4  # the 64-byte body the HTTP backend answers every request with

# Groups of figures, selectable with --columns; each needs its backend and load tool.
ALL_COLUMNS = ['memory', 'iperf', 'pingpong', 'connrate', 'wrk', 'wrk-close', 'reqresp', 'reqresp-bulk']


class BenchError(Exception):
    """A figure that could not be measured; the message goes into the table's notes."""


def log(msg):
    print(f'[bench {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes we start

class Procs:
    """Starts processes and records each PID (with its comm, so the shell trap never kills a reused PID)."""

    def __init__(self, pidfile, tmp):
        self.pidfile = pidfile
        self.tmp = tmp
        self.live = []

    def record(self, pid, comm):
        # The expected comm, not /proc/PID/comm read now: right after a vfork-based spawn the child may
        # still show the parent's comm (the parent resumes before exec sets the new one).
        with open(self.pidfile, 'a') as f:
            f.write(f'{pid} {comm[:15]}\n')

    def spawn(self, name, argv, stdin=subprocess.DEVNULL, stdout=None, stderr=None):
        out = stdout if stdout is not None else open(os.path.join(self.tmp, f'{name}.out'), 'ab')
        err = stderr if stderr is not None else open(os.path.join(self.tmp, f'{name}.err'), 'ab')
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err)
        finally:
            for f in (out, err):  # the child holds its own copies
                if hasattr(f, 'close'):
                    f.close()
        p.bench_name = name
        self.record(p.pid, os.path.basename(argv[0]))
        self.live.append(p)
        return p

    def stop(self, p, timeout=5.0):
        """SIGTERM, then SIGKILL after `timeout`; also any child it left behind (nginx workers)."""
        if p not in self.live:
            return
        kids = descendants(p.pid) if p.poll() is None else []
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for pid in kids:
            deadline = time.time() + 3
            while os.path.exists(f'/proc/{pid}') and time.time() < deadline:
                time.sleep(0.05)
            if os.path.exists(f'/proc/{pid}'):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.live.remove(p)

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p)


def descendants(pid):
    children = {}
    for st in glob.glob('/proc/[0-9]*/stat'):
        try:
            s = open(st).read()
        except OSError:
            continue
        fields = s.rsplit(')', 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(st.split('/')[2]))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def process_tree(pid):
    return [pid] + descendants(pid)


# ---------------------------------------------------------------- /proc readers

def tcp_sockets():
    """(local_port, remote_port, state) for every IPv4/IPv6 TCP socket."""
    rows = []
    for path in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            rows.append((int(f[1].rsplit(':', 1)[1], 16), int(f[2].rsplit(':', 1)[1], 16), f[3]))
    return rows


def wait_listening(ports, deadline_s, proc=None):
    want = set(ports)
    end = time.time() + deadline_s
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f'exited with code {proc.returncode} before listening')
        listening = {lp for lp, _, st in tcp_sockets() if st == '0A'}
        if want <= listening:
            return
        time.sleep(0.05)
    raise BenchError(f'ports {sorted(want)} not listening after {deadline_s:.0f} s')


def wait_drained(port, deadline_s):
    """Waits until no socket on `port` is still open (LISTEN and TIME_WAIT do not count)."""
    end = time.time() + deadline_s
    left = 0
    while time.time() < end:
        left = sum(1 for lp, _, st in tcp_sockets() if lp == port and st not in ('0A', '06', '07'))
        if left == 0:
            return 0
        time.sleep(0.1)
    return left


def host_busy_jiffies():
    # busy = user + nice + system + irq + softirq. iowait and idle are not work; steal is time the
    # hypervisor took from this guest, not work done here (guest time is already inside user).
    f = open('/proc/stat').readline().split()
    user, nice, system, idle, iowait, irq, softirq = map(int, f[1:8])
    return user + nice + system + irq + softirq


def proc_cpu_jiffies(pids):
    total = 0
    for pid in pids:
        for st in glob.glob(f'/proc/{pid}/task/*/stat'):
            try:
                f = open(st).read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            total += int(f[11]) + int(f[12])  # utime, stime
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f'/proc/{pid}/status'):
                if line.startswith('VmRSS:'):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def all_process_jiffies():
    out = {}
    for st in glob.glob('/proc/[0-9]*/stat'):
        try:
            s = open(st).read()
        except OSError:
            continue
        f = s.rsplit(')', 1)[1].split()
        out[int(st.split('/')[2])] = (s[s.index('(') + 1:s.rindex(')')], int(f[11]) + int(f[12]))
    return out


def background_load(seconds=1.0):
    """Host busy share while this benchmark runs nothing, and the processes causing it: other work on
    the host (builds, tests) takes CPU from the rows and makes a run incomparable with a quiet one."""
    hz = os.sysconf('SC_CLK_TCK')
    p0, h0, t0 = all_process_jiffies(), host_busy_jiffies(), time.time()
    time.sleep(seconds)
    p1, h1, t1 = all_process_jiffies(), host_busy_jiffies(), time.time()
    busy = (h1 - h0) / hz / (t1 - t0) / os.cpu_count()
    top = sorted(((j1 - p0[pid][1], name) for pid, (name, j1) in p1.items() if pid in p0), reverse=True)
    top = [f'{name} {100 * j / hz / (t1 - t0):.0f}%' for j, name in top[:3] if j / hz / (t1 - t0) >= 0.05]
    return busy, top


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left over is no conflict
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def read_line(stream, deadline_s, proc=None):
    """One line from a pipe within a deadline ('' on EOF)."""
    end = time.time() + deadline_s
    buf = b''
    while time.time() < end:
        r, _, _ = select.select([stream], [], [], 0.2)
        if r:
            b = os.read(stream.fileno(), 1)
            if not b:
                return buf.decode(errors='replace')
            buf += b
            if b == b'\n':
                return buf.decode(errors='replace')
        elif proc is not None and proc.poll() is not None:
            return buf.decode(errors='replace')
    raise BenchError(f'no output within {deadline_s:.0f} s')


def last_lines(path, n=3):
    try:
        lines = [l.strip() for l in open(path, errors='replace').read().splitlines() if l.strip()]
    except OSError:
        return ''
    return ' | '.join(lines[-n:])


# ---------------------------------------------------------------- proxies

class Proxy:
    """A proxy under test: start() raises BenchError with the reason if it cannot run."""

    def __init__(self, row, ctx):
        self.row, self.ctx = row, ctx
        base = ROW_BASE[row]
        self.ports = {name: base + 1 + i for i, name in enumerate(ROUTES)}
        self.admin_port = base + 9
        self.proc = None
        self.dir = os.path.join(ctx.tmp, row)
        os.makedirs(self.dir, exist_ok=True)

    def pids(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return process_tree(self.proc.pid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise BenchError(f'{self.row} exited (code {code}): {last_lines(self.errlog)}')

    def stop(self):
        if self.proc is not None:
            self.ctx.procs.stop(self.proc)

    def notes(self):
        return []

    def routes(self):
        return [(name, self.ports[name], BACKEND_PORTS[name]) for name in ROUTES]


class HAProxy(Proxy):
    def start(self):
        exe = self.ctx.which('haproxy')
        if not exe:
            raise BenchError('haproxy not installed')
        # HAProxy needs about 2 x maxconn descriptors and refuses to start if the limit is below that.
        maxconn = min(40000, (self.ctx.nofile - 100) // 2)
        cfg = os.path.join(self.dir, 'haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write('global\n'
                    '    nbthread 2\n'                       # one thread per core, like skproxy workers: 0
                    f'    maxconn {maxconn}\n'
                    'defaults\n'
                    '    mode tcp\n'
                    '    timeout connect 5s\n'
                    '    timeout client 10m\n'
                    '    timeout server 10m\n'
                    f'    maxconn {maxconn}\n')
            for name, lp, bp in self.routes():
                mode = '    mode http\n' if self.row.endswith('-http') and name == 'http' else ''
                f.write(f'listen {name}\n    bind {HOST}:{lp}\n{mode}    server s1 {HOST}:{bp}\n')
        self.errlog = os.path.join(self.dir, 'haproxy.err')
        self.proc = self.ctx.procs.spawn('haproxy', [exe, '-db', '-f', cfg], stderr=open(self.errlog, 'ab'))
        try:
            wait_listening(self.ports.values(), 10, self.proc)
        except BenchError as e:
            raise BenchError(f'failed to start: {e}: {last_lines(self.errlog)}')


class Nginx(Proxy):
    def start(self):
        exe = self.ctx.which('nginx')
        if not exe:
            raise BenchError('nginx not installed')
        built = subprocess.run([exe, '-V'], capture_output=True, text=True).stderr
        load = ''
        if '--with-stream=dynamic' in built:
            if not os.path.exists(NGINX_STREAM_MODULE):
                raise BenchError(f'{NGINX_STREAM_MODULE} missing (apt-get install libnginx-mod-stream)')
            load = f'load_module {NGINX_STREAM_MODULE};\n'
        elif '--with-stream' not in built:
            raise BenchError('this nginx has no stream module')
        cfg = os.path.join(self.dir, 'nginx.conf')
        self.errlog = os.path.join(self.dir, 'error.log')
        with open(cfg, 'w') as f:
            f.write(load +
                    'worker_processes 2;\n'               # one worker per core, like skproxy workers: 0
                    f'worker_rlimit_nofile {self.ctx.nofile};\n'
                    f'pid {self.dir}/nginx.pid;\n'
                    f'error_log {self.errlog} warn;\n'
                    f'events {{ worker_connections {min(32768, self.ctx.nofile)}; }}\n'
                    'stream {\n')
            http = self.row.endswith('-http')
            for name, lp, bp in self.routes():
                if not (http and name == 'http'):
                    f.write(f'    server {{ listen {HOST}:{lp} backlog=4096; proxy_pass {HOST}:{bp}; }}\n')
            f.write('}\n')
            if http:
                # nginx's http proxy speaks HTTP/1.0 to upstreams and closes each time unless told; an
                # nginx user would keep upstream connections alive, as HAProxy does by default.
                lp, bp = self.ports['http'], BACKEND_PORTS['http']
                f.write('http {\n    access_log off;\n'
                        f'    upstream backend {{ server {HOST}:{bp}; keepalive 64; }}\n'
                        f'    server {{ listen {HOST}:{lp} backlog=4096;\n'
                        '        location / { proxy_pass http://backend; proxy_http_version 1.1;\n'
                        '                     proxy_set_header Connection ""; } }\n}\n')
        self.proc = self.ctx.procs.spawn(
            'nginx', [exe, '-p', self.dir + '/', '-e', self.errlog, '-c', cfg, '-g', 'daemon off;'],
            stderr=open(os.path.join(self.dir, 'nginx.stderr'), 'ab'))
        try:
            wait_listening(self.ports.values(), 10, self.proc)
            end = time.time() + 10
            while len(self.pids()) < 3 and time.time() < end:  # master + 2 workers
                self.check_alive()
                time.sleep(0.05)
            if len(self.pids()) < 3:
                raise BenchError('workers did not start')
        except BenchError as e:
            raise BenchError(f'failed to start: {e}: {last_lines(self.errlog)}')
        for pid in descendants(self.proc.pid):
            self.ctx.procs.record(pid, 'nginx')


class Skproxy(Proxy):
    def __init__(self, row, ctx, datapath, http=False, pool=False):
        super().__init__(row, ctx)
        self.datapath = datapath
        self.http = http
        # http_keepalive on the http cluster: an nginx user keeps `keepalive 64` upstream connections (the
        # nginx-http row does), so the skproxy-http row does the same; skproxy-http-splice splices each
        # client connection to an upstream connection of its own (the behaviour without the key).
        self.pool = pool
        self.ready = threading.Event()
        self.ready_line = ''
        self.chosen = None

    def start(self):
        exe = self.ctx.baseline if self.row.endswith('-baseline') else self.ctx.skproxy
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise BenchError('binary missing')
        cfg = os.path.join(self.dir, 'skproxy.yaml')
        with open(cfg, 'w') as f:
            f.write(f'admin: {{ address: "{HOST}:{self.admin_port}" }}\n'
                    f'datapath: {self.datapath}\n'
                    'workers: 0\n'
                    'listeners:\n')
            for name, lp, _ in self.routes():
                f.write(f'  - name: {name}\n    address: "{HOST}:{lp}"\n    cluster: {name}\n')
                if self.http and name == 'http':
                    f.write('    protocol: http\n')
            f.write('clusters:\n')
            for name, _, bp in self.routes():
                f.write(f'  - name: {name}\n    connect_timeout: 5s\n    endpoints: ["{HOST}:{bp}"]\n')
                if self.pool and name == 'http':
                    f.write('    http_keepalive: { max_idle: 64 }\n')
        self.errlog = os.path.join(self.dir, 'skproxy.err')
        self.proc = self.ctx.procs.spawn('skproxy', [exe, '--config', cfg, '--datapath', self.datapath],
                                         stderr=subprocess.PIPE)
        threading.Thread(target=self._tee_stderr, daemon=True).start()
        end = time.time() + 15
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None:
                self.ready.wait(0.5)  # let the reader copy the last lines
                raise BenchError(f'failed to start: exit {self.proc.returncode}: {last_lines(self.errlog)}')
            if time.time() > end:
                raise BenchError('failed to start: no "skproxy ready" line within 15 s')
        got = re.search(r'datapath=(\S+)', self.ready_line)
        # auto may come up on either path (sockmap where the kernel path loads): the note says which.
        allowed = ('sockmap', 'userspace') if self.datapath == 'auto' else (self.datapath,)
        if not got or got.group(1) not in allowed:
            raise BenchError(f'failed to start: asked for datapath={self.datapath}, got "{self.ready_line.strip()}"')
        self.chosen = got.group(1)

    def _tee_stderr(self):
        with open(self.errlog, 'ab') as out:
            for line in iter(self.proc.stderr.readline, b''):
                out.write(line)
                out.flush()
                text = line.decode(errors='replace')
                if text.startswith('skproxy ready:') and not self.ready.is_set():
                    self.ready_line = text
                    self.ready.set()

    def metrics(self):
        try:
            with urllib.request.urlopen(f'http://{HOST}:{self.admin_port}/metrics', timeout=3) as r:
                text = r.read().decode(errors='replace')
        except OSError as e:
            return None, str(e)
        samples = []
        for line in text.splitlines():
            if not line or line.startswith('#'):
                continue
            name_labels, _, value = line.rpartition(' ')
            name, _, labels = name_labels.partition('{')
            lab = {}
            for part in labels.rstrip('}').split(','):
                if '=' in part:
                    k, v = part.split('=', 1)
                    lab[k.strip()] = v.strip().strip('"')
            try:
                samples.append((name, lab, float(value)))
            except ValueError:
                pass
        return samples, None

    def byte_counters(self):
        """(kernel-path bytes, user-path bytes) moved so far, both directions, from /metrics."""
        samples, err = self.metrics()
        if samples is None:
            raise BenchError(f'metrics unavailable: {err}')
        return tuple(sum(v for n, lab, v in samples if n == 'skproxy_bytes_total' and lab.get('path') == path)
                     for path in ('kernel', 'user'))

    def notes(self):
        samples, err = self.metrics()
        if samples is None:
            return [f'metrics unavailable: {err}']

        def total(name, **match):
            return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in match.items()))
        chose = [f'auto chose datapath={self.chosen}'] if self.datapath == 'auto' else []
        conns = {dp: total('skproxy_connections_total', datapath=dp) for dp in ('sockmap', 'userspace')}
        kern = total('skproxy_bytes_total', path='kernel')
        user = total('skproxy_bytes_total', path='user')
        share = f'{100 * kern / (kern + user):.1f}%' if kern + user > 0 else 'n/a'
        return chose + [f'connections sockmap={conns["sockmap"]:.0f} userspace={conns["userspace"]:.0f}; '
                f'bytes kernel={kern / 1e9:.2f} GB user={user / 1e9:.2f} GB (kernel share {share}); '
                f'fallbacks={total("skproxy_fallbacks_total"):.0f}; '
                f'gate switches={total("skproxy_gate_switches_total"):.0f}; '
                f'path switches to kernel={total("skproxy_datapath_switches_total", to="kernel"):.0f} '
                f'to user={total("skproxy_datapath_switches_total", to="user"):.0f}; '
                f'upstream connect failures={total("skproxy_upstream_connect_failures_total"):.0f}']


class Direct(Proxy):
    def start(self):
        self.ports = dict(BACKEND_PORTS)

    def routes(self):
        return []


def make_row(row, ctx):
    if row == 'direct':
        return Direct(row, ctx)
    if row in ('haproxy', 'haproxy-http'):
        return HAProxy(row, ctx)
    if row in ('nginx', 'nginx-http'):
        return Nginx(row, ctx)
    if row.startswith('skproxy-http'):
        # The -baseline row runs the same config as the row it is compared with (pooled), so a baseline binary
        # must know http_keepalive.
        return Skproxy(row, ctx, 'auto', http=True, pool=row in ('skproxy-http', 'skproxy-http-baseline'))
    return Skproxy(row, ctx, row.split('-')[1])


# ---------------------------------------------------------------- measurements

class Ctx:
    def __init__(self, args):
        self.args = args
        self.tmp = args.tmp
        self.procs = Procs(args.pidfile, args.tmp)
        self.tools = os.path.join(args.build, 'bench')
        self.skproxy = args.skproxy
        self.baseline = args.baseline
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # One proxied connection costs a single-process proxy two descriptors; keep ~1000 spare.
        fit = max(100, (self.nofile - 1000) // 2 // 100 * 100)
        self.idle_conns = args.idle_conns or min(10000, fit)
        self.idle_limited = not args.idle_conns and fit < 10000
        q = args.quick
        self.iperf_t = 2 if q else 8
        self.pp_count, self.pp_warmup = (2000, 200) if q else (20000, 1000)
        self.cr_seconds, self.cr_workers = (2 if q else 5), 4
        self.wrk_s = 2 if q else 5  # each of the two wrk runs
        self.rr_seconds, self.rr_conns, self.rr_size = (2 if q else 5), 50, 32
        self.rr_bulk = 4 << 20  # reqresp-bulk: bytes each connection echoes before its small messages
        self.columns = [c for c in ALL_COLUMNS if c in args.columns]
        self.iperf_server = None
        self.http_backend = None
        # Columns that cannot run at all on this host, with the reason (shown as "n/a (reason)").
        self.col_na = {}
        if not self.which('wrk'):
            for c in ('wrk', 'wrk-close'):
                self.col_na[c] = 'wrk not installed'
        if not os.access(self.tool('reqresp'), os.X_OK):
            self.col_na['reqresp'] = self.col_na['reqresp-bulk'] = f'{self.tool("reqresp")} not built'

    def runs(self, column):
        return column in self.columns and column not in self.col_na

    def tool(self, name):
        return os.path.join(self.tools, f'skproxy_bench_{name}')

    @staticmethod
    def which(name):
        for d in os.environ.get('PATH', '').split(':') + ['/usr/sbin', '/sbin']:
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        return None

    def start_backends(self):
        if self.runs('wrk') or self.runs('wrk-close'):
            try:
                self.start_http_backend()
            except BenchError as e:
                log(f'HTTP backend: {e}')
                for c in ('wrk', 'wrk-close'):
                    self.col_na.setdefault(c, f'HTTP backend: {e}')
        self.start_iperf_server()
        self.echo = self.procs.spawn('echo', [self.tool('pingpong'), 'server', f'{HOST}:{BACKEND_PORTS["echo"]}',
                                              '--threads', '1', '--max-seconds', '3600'])
        self.once = self.procs.spawn('once', [self.tool('connrate'), 'server', f'{HOST}:{BACKEND_PORTS["once"]}',
                                              '--threads', '2', '--max-seconds', '3600'])
        wait_listening([BACKEND_PORTS['echo']], 10, self.echo)
        wait_listening([BACKEND_PORTS['once']], 10, self.once)

    def start_http_backend(self):
        """Our own nginx as the HTTP backend of the wrk columns: one worker, a fixed 64-byte body, no log."""
        exe = self.which('nginx')
        if not exe:
            raise BenchError('nginx not installed')
        d = os.path.join(self.tmp, 'http-backend')
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, 'nginx.conf')
        errlog = os.path.join(d, 'error.log')
        port = BACKEND_PORTS['http']
        with open(cfg, 'w') as f:
            f.write('worker_processes 1;\n'
                    f'pid {d}/nginx.pid;\n'
                    f'error_log {errlog} warn;\n'
                    f'events {{ worker_connections {min(16384, self.nofile)}; }}\n'
                    'http {\n'
                    '    access_log off;\n'
                    # A keep-alive connection is never closed by the backend during a run.
                    '    keepalive_requests 100000000;\n'
                    '    keepalive_timeout 60s;\n'
                    + ''.join(f'    {t}_temp_path {d}/{t}_temp;\n'
                              for t in ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi')) +
                    f'    server {{\n        listen {HOST}:{port} backlog=4096;\n'
                    f'        location / {{ default_type text/plain; return 200 "{HTTP_BODY.decode()}"; }}\n'
                    '    }\n'
                    '}\n')
        self.http_backend = self.procs.spawn(
            'http-backend', [exe, '-p', d + '/', '-e', errlog, '-c', cfg, '-g', 'daemon off;'])
        try:
            wait_listening([port], 10, self.http_backend)
        except BenchError as e:
            raise BenchError(f'failed to start: {e}: {last_lines(errlog)}')
        for pid in descendants(self.http_backend.pid):
            self.procs.record(pid, 'nginx')
        # Readiness and the body in one check: a worker answers with exactly the 64 bytes.
        try:
            with urllib.request.urlopen(f'http://{HOST}:{port}/', timeout=5) as r:
                body = r.read()
        except OSError as e:
            raise BenchError(f'no answer to GET /: {e}')
        if body != HTTP_BODY:
            raise BenchError(f'answered {len(body)} bytes, not the {len(HTTP_BODY)}-byte body')

    def start_iperf_server(self):
        if self.iperf_server is not None:
            self.procs.stop(self.iperf_server)
        self.iperf_server = self.procs.spawn('iperf3-server', ['iperf3', '-s', '-B', HOST, '-p',
                                                               str(BACKEND_PORTS['iperf'])])
        wait_listening([BACKEND_PORTS['iperf']], 10, self.iperf_server)


def iperf(ctx, port, streams, pids, share_of=None):
    """One iperf3 run; with `share_of` (an skproxy row), also the share of the bytes it moved that took
    the kernel path, from the deltas of its skproxy_bytes_total{path=kernel|user} over the run."""
    cmd = ['iperf3', '-c', HOST, '-p', str(port), '-t', str(ctx.iperf_t), '-P', str(streams), '-J']
    counters = share_of is not None and isinstance(share_of, Skproxy)
    k0, u0 = share_of.byte_counters() if counters else (0, 0)
    h0, p0 = host_busy_jiffies(), proc_cpu_jiffies(pids)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=ctx.iperf_t + 30)
    except subprocess.TimeoutExpired:
        ctx.start_iperf_server()  # a half-finished test leaves the server busy
        raise BenchError(f'iperf3 -P{streams} timed out')
    h1, p1 = host_busy_jiffies(), proc_cpu_jiffies(pids)
    k1, u1 = share_of.byte_counters() if counters else (0, 0)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        ctx.start_iperf_server()
        raise BenchError(f'iperf3 -P{streams}: no JSON (exit {r.returncode}): {r.stderr.strip()[:200]}')
    if j.get('error'):
        ctx.start_iperf_server()
        raise BenchError(f'iperf3 -P{streams}: {j["error"]}')
    recv = j['end']['sum_received']
    hz = os.sysconf('SC_CLK_TCK')
    out = dict(gbps=recv['bits_per_second'] / 1e9, bytes=recv['bytes'],
               host_s=(h1 - h0) / hz, proxy_s=(p1 - p0) / hz)
    if counters:
        kern, user = k1 - k0, u1 - u0
        if kern + user <= 0:
            raise BenchError(f'iperf3 -P{streams}: the proxy counted no bytes on either path')
        out['kernel_share'] = kern / (kern + user)
        out['share_note'] = (f'iperf3 -P{streams}: {kern / 1e9:.2f} GB on the kernel path, {user / 1e9:.2f} GB on '
                             f'the user path (kernel share {100 * out["kernel_share"]:.1f}%)')
    return out


def kv_line(text):
    out = {}
    for tok in text.split():
        if '=' in tok:
            k, v = tok.split('=', 1)
            out[k] = v.strip('"')
    return out


def pingpong(ctx, port):
    cmd = [ctx.tool('pingpong'), 'client', f'{HOST}:{port}', '--count', str(ctx.pp_count),
           '--warmup', str(ctx.pp_warmup), '--max-seconds', '60']
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=75)
    except subprocess.TimeoutExpired:
        raise BenchError('ping-pong timed out')
    if r.returncode != 0:
        raise BenchError(f'ping-pong: {r.stderr.strip()[:200]}')
    kv = kv_line(r.stdout)
    return float(kv['p50_us']), float(kv['p99_us'])


def rate_client(cmd, timeout, label, key):
    """Runs one of our rate clients (connrate, reqresp) and returns its key=value line; a client that fails,
    times out or prints no `key` raises BenchError with what it said."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f'{label} client timed out')
    kv = kv_line(r.stdout)
    if r.returncode != 0 or key not in kv:
        raise BenchError(f'{label}: {r.stdout.strip()[:200]} {r.stderr.strip()[:200]}')
    return kv


def connrate(ctx, port):
    cmd = [ctx.tool('connrate'), 'client', f'{HOST}:{port}', '--seconds', str(ctx.cr_seconds),
           '--workers', str(ctx.cr_workers), '--max-conns', '1000000']
    kv = rate_client(cmd, ctx.cr_seconds + 30, 'connection rate', 'conns_per_s')
    note = None
    if int(kv.get('errors', 0)) > 0:
        note = f'connection rate: {kv["errors"]} failed cycles of {int(kv["ok"]) + int(kv["errors"])} ' \
               f'(first: {kv.get("first_error", "?")})'
    return float(kv['conns_per_s']), note


def wrk(ctx, port, pids, close):
    """wrk -t2 -c64 against the HTTP backend through `port`; with `close`, every request says
    Connection: close, so each one is a new connection. Returns rate, requests and CPU over the run."""
    cmd = ['wrk', '-t2', '-c64', f'-d{ctx.wrk_s}s', '--timeout', '5s']
    if close:
        cmd += ['-H', 'Connection: close']
    cmd.append(f'http://{HOST}:{port}/')
    label = 'wrk Connection: close' if close else 'wrk keep-alive'
    h0, p0 = host_busy_jiffies(), proc_cpu_jiffies(pids)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=ctx.wrk_s + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f'{label}: wrk did not finish within {ctx.wrk_s + 30} s')
    h1, p1 = host_busy_jiffies(), proc_cpu_jiffies(pids)
    out = r.stdout
    total = re.search(r'^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b', out, re.M)
    rate = re.search(r'^Requests/sec:\s*([\d.]+)', out, re.M)
    if r.returncode != 0 or not total or not rate:
        raise BenchError(f'{label}: exit {r.returncode}: {(out + r.stderr).strip()[-200:]}')
    requests = int(total.group(1))
    if requests == 0:
        raise BenchError(f'{label}: no request completed')
    problems = []
    errs = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', out)
    if errs and any(int(x) for x in errs.groups()):
        problems.append('socket errors: connect {}, read {}, write {}, timeout {}'.format(*errs.groups()))
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if non2xx:
        problems.append(f'{non2xx.group(1)} non-2xx/3xx responses')
    hz = os.sysconf('SC_CLK_TCK')
    return dict(rate=float(rate.group(1)), requests=requests,
                proxy_us=(p1 - p0) / hz * 1e6 / requests, host_us=(h1 - h0) / hz * 1e6 / requests,
                note=f'{label}: {requests} requests, ' + '; '.join(problems) if problems else None)


def reqresp(ctx, port, bulk_first=0):
    cmd = [ctx.tool('reqresp'), f'{HOST}:{port}', '--connections', str(ctx.rr_conns), '--size', str(ctx.rr_size),
           '--seconds', str(ctx.rr_seconds), '--threads', '2', '--bulk-first', str(bulk_first)]
    kv = rate_client(cmd, ctx.rr_seconds + 60, 'request/response', 'reqs_per_s')
    note = None
    if int(kv.get('errors', 0)) > 0:
        note = f'request/response: {kv["errors"]} of {ctx.rr_conns} connections failed ' \
               f'(first: {kv.get("first_error", "?")})'
    return float(kv['reqs_per_s']), note


def idle_memory(ctx, proxy):
    """KiB of proxy RSS per held connection: (RSS with N idle - RSS before) / N, all its processes summed."""
    n = ctx.idle_conns
    port = proxy.ports['echo']
    before = rss_kib(proxy.pids())
    p = ctx.procs.spawn('idleconns', [ctx.tool('idleconns'), f'{HOST}:{port}', '--count', str(n),
                                      '--parallel', '256', '--connect-seconds', '60', '--hold-seconds', '120'],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = read_line(p.stdout, 75, p)
        if not line.startswith('established'):
            raise BenchError(f'idle connections: {line.strip() or "client exited"}')
        # RSS is read twice, 0.5 s apart, and the larger taken: lazily allocated per-connection state
        # (first read, timers) may land just after the echo that made the connection count as up.
        time.sleep(0.5)
        r1 = rss_kib(proxy.pids())
        time.sleep(0.5)
        after = max(r1, rss_kib(proxy.pids()))
        proxy.check_alive()
        p.stdin.close()
        tail = read_line(p.stdout, 30, p)
        p.wait(30)
        kv = kv_line(tail)
        note = None
        if kv.get('peer_closed', '0') != '0':
            note = f'idle connections: {kv["peer_closed"]} of {n} closed by the proxy while held'
        return (after - before) / n, note
    finally:
        ctx.procs.stop(p)
        left = wait_drained(port, 30)
        if left:
            log(f'{proxy.row}: {left} connections on port {port} still open 30 s after release')


def run_row(ctx, row):
    """Returns ({metric: value}, [notes]); a row that cannot start returns ({}, [reason]) with 'skip'."""
    proxy = make_row(row, ctx)
    res, notes = {}, []
    try:
        proxy.start()
    except BenchError as e:
        proxy.stop()
        return None, [str(e)]
    try:
        pids = proxy.pids()

        def measure(label, fn):
            try:
                if row != 'direct':
                    proxy.check_alive()
                return fn()
            except BenchError as e:
                notes.append(f'{label}: {e}')
                log(f'{row}: {label} failed: {e}')
                return None

        if row != 'direct' and ctx.runs('memory'):
            log(f'{row}: {ctx.idle_conns} idle connections')
            m = measure('memory', lambda: idle_memory(ctx, proxy))
            if m:
                res['kib_per_conn'] = m[0]
                if m[1]:
                    notes.append(m[1])
        if ctx.runs('iperf'):
            log(f'{row}: iperf3')
            bulk = []
            for streams in (1, 8):
                b = measure(f'iperf3 -P{streams}', lambda: iperf(ctx, proxy.ports['iperf'], streams, pids,
                                                                proxy if streams == 1 else None))
                if b:
                    res[f'p{streams}_gbps'] = b['gbps']
                    bulk.append(b)
                    if 'kernel_share' in b:
                        res['kernel_share'] = b['kernel_share']
                        notes.append(b['share_note'])
                time.sleep(0.5)  # let the last stream's teardown finish outside the next CPU window
            if len(bulk) == 2:
                gb = sum(b['bytes'] for b in bulk) / 1e9
                res['host_cpu_s_per_gb'] = sum(b['host_s'] for b in bulk) / gb
                if row != 'direct':
                    res['proxy_cpu_s_per_gb'] = sum(b['proxy_s'] for b in bulk) / gb
        if ctx.runs('pingpong'):
            log(f'{row}: ping-pong')
            pp = measure('ping-pong', lambda: pingpong(ctx, proxy.ports['echo']))
            if pp:
                res['pp_p50_us'], res['pp_p99_us'] = pp
        if ctx.runs('connrate'):
            log(f'{row}: connection rate')
            cr = measure('connection rate', lambda: connrate(ctx, proxy.ports['once']))
            if cr:
                res['conns_per_s'] = cr[0]
                if cr[1]:
                    notes.append(cr[1])
        for column, close, prefix in (('wrk', False, 'wrk'), ('wrk-close', True, 'wrkc')):
            if not ctx.runs(column):
                continue
            log(f'{row}: {column}')
            left = wait_drained(proxy.ports['http'], 10)  # no connection of an earlier run in this window
            if left:
                notes.append(f'{column}: {left} connections of an earlier run still open on the HTTP port')
            w = measure(column, lambda: wrk(ctx, proxy.ports['http'], pids, close))
            if w:
                res[f'{prefix}_rate'] = w['rate']
                res[f'{prefix}_host_us'] = w['host_us']
                if row != 'direct':
                    res[f'{prefix}_proxy_us'] = w['proxy_us']
                if w['note']:
                    notes.append(w['note'])
        if ctx.runs('reqresp'):
            log(f'{row}: request/response')
            rr = measure('request/response', lambda: reqresp(ctx, proxy.ports['echo']))
            if rr:
                res['rr_rate'] = rr[0]
                if rr[1]:
                    notes.append(rr[1])
        if ctx.runs('reqresp-bulk'):
            log(f'{row}: request/response after bulk')
            rr = measure('request/response after bulk', lambda: reqresp(ctx, proxy.ports['echo'], ctx.rr_bulk))
            if rr:
                res['rrb_rate'] = rr[0]
                if rr[1]:
                    notes.append(rr[1])
        if proxy.alive() or row == 'direct':
            notes.extend(proxy.notes())
    finally:
        proxy.stop()
    return res, notes


# ---------------------------------------------------------------- report

def versions(ctx):
    def first(cmd, stream='stdout'):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return 'not installed'
        except subprocess.TimeoutExpired:
            return f'no answer to {" ".join(cmd[1:])} within 10 s'
        text = (r.stdout if stream == 'stdout' else r.stderr).strip() or (r.stdout + r.stderr).strip()
        return text.splitlines()[0] if text else f'exit {r.returncode}'
    sk = first([ctx.skproxy, '--version']) if os.path.isfile(ctx.skproxy) else 'missing'
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    u = platform.uname()
    def deb(*pkgs):
        found = []
        for pkg in pkgs:
            try:
                r = subprocess.run(['dpkg-query', '-W', '-f=${Version}', pkg], capture_output=True, text=True,
                                   timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0 and r.stdout.strip():
                found.append(f'{pkg} {r.stdout.strip()}')
        return f' (Debian: {", ".join(found)})' if found else ''
    return [('date', datetime.datetime.now().astimezone().isoformat(timespec='seconds')),
            ('kernel', f'{u.system} {u.release} {u.version} {u.machine}'),
            ('cpu', f'{cpu}, {os.cpu_count()} cores'),
            ('haproxy', first(['haproxy', '-v']) + deb('haproxy')),
            ('nginx', first(['nginx', '-v'], 'stderr') + deb('nginx', 'libnginx-mod-stream')),
            ('iperf3', first(['iperf3', '--version']) + deb('iperf3')),
            ('wrk', (first(['wrk', '--version']) + deb('wrk')) if ctx.which('wrk') else 'not installed'),
            ('skproxy', f'{sk} ({ctx.skproxy})')]


# (metric, column group, header, reference row for the ratio or None, format)
# Proxy CPU and memory do not exist for "direct": those are compared with HAProxy.
TABLES = [
    ('Bulk, latency, connections, memory', [
        ('p1_gbps', 'iperf', 'iperf3 -P1 Gbit/s', 'direct', '{:.2f}'),
        ('p8_gbps', 'iperf', 'iperf3 -P8 Gbit/s', 'direct', '{:.2f}'),
        ('pp_p50_us', 'pingpong', 'ping-pong p50 µs', 'direct', '{:.1f}'),
        ('pp_p99_us', 'pingpong', 'ping-pong p99 µs', 'direct', '{:.1f}'),
        ('conns_per_s', 'connrate', 'new conn/s', 'direct', '{:,.0f}'),
        ('proxy_cpu_s_per_gb', 'iperf', 'proxy CPU-s/GB ¹', 'haproxy', '{:.3f}'),
        ('host_cpu_s_per_gb', 'iperf', 'host CPU-s/GB ²', 'direct', '{:.3f}'),
        ('kib_per_conn', 'memory', 'KiB/conn ({idle} idle) ³', 'haproxy', '{:.2f}'),
    ]),
    ('HTTP and request/response', [
        ('wrk_rate', 'wrk', 'wrk HTTP 64 B keep-alive req/s ⁴', 'direct', '{:,.0f}'),
        ('wrk_proxy_us', 'wrk', 'proxy CPU-µs/req ¹', 'haproxy', '{:.1f}'),
        ('wrk_host_us', 'wrk', 'host CPU-µs/req ²', 'direct', '{:.1f}'),
        ('wrkc_rate', 'wrk-close', 'wrk Connection: close conn/s ⁵', 'direct', '{:,.0f}'),
        ('wrkc_proxy_us', 'wrk-close', 'proxy CPU-µs/conn ¹', 'haproxy', '{:.1f}'),
        ('wrkc_host_us', 'wrk-close', 'host CPU-µs/conn ²', 'direct', '{:.1f}'),
        ('rr_rate', 'reqresp', 'req/resp {rr_conns}×{rr_size} B req/s ⁶', 'direct', '{:,.0f}'),
        ('rrb_rate', 'reqresp-bulk', 'req/resp after bulk req/s ⁸', 'direct', '{:,.0f}'),
        ('kernel_share', 'iperf', 'kernel share, iperf3 -P1 ⁷', None, '{:.1%}'),
    ]),
]
METRICS = [m for _, cols in TABLES for m, *_ in cols]
PROXY_ONLY = {'proxy_cpu_s_per_gb', 'kib_per_conn', 'wrk_proxy_us', 'wrkc_proxy_us'}


def report(ctx, rows, results, notes, skipped):
    med = {}
    for row in rows:
        for m in METRICS:
            vals = [r[m] for r in results[row] if r and m in r]
            if vals:
                med[(row, m)] = statistics.median(vals)
    a = ctx.args
    print()
    print('## skproxy peer benchmark')
    print()
    for k, v in versions(ctx):
        print(f'- {k}: {v}')
    busy, top = ctx.load_before
    quiet = 'quiet' if busy < 0.10 else 'NOT QUIET: other work competes with the rows, figures are not comparable'
    print(f'- host before the run: {100 * busy:.0f}% busy over {os.cpu_count()} CPUs'
          f'{" (" + ", ".join(top) + ")" if top else ""}, {quiet}; load average at the end: '
          f'{" ".join(open("/proc/loadavg").read().split()[:3])}')
    print(f'- settings: {"quick" if a.quick else "full"}, reps={a.reps} (median shown), '
          f'columns={",".join(ctx.columns)}, iperf3 -t {ctx.iperf_t}, '
          f'ping-pong {ctx.pp_count} round trips of 64 B after {ctx.pp_warmup} warm-up, '
          f'connection rate {ctx.cr_seconds} s x {ctx.cr_workers} workers, '
          f'{ctx.idle_conns} idle connections, wrk -t2 -c64 -d{ctx.wrk_s}s (twice), '
          f'request/response {ctx.rr_conns} connections x {ctx.rr_size} B for {ctx.rr_seconds} s, '
          f'RLIMIT_NOFILE {ctx.nofile}')
    used = set()
    for title, cols in TABLES:
        cols = [c for c in cols if c[1] in ctx.columns]
        if not cols:
            continue
        used.update(c[1] for c in cols)
        print()
        print(f'### {title}')
        print()
        head = ['row'] + [h.format(idle=ctx.idle_conns, rr_conns=ctx.rr_conns, rr_size=ctx.rr_size)
                          for _, _, h, _, _ in cols]
        print('| ' + ' | '.join(head) + ' |')
        print('|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|')
        for row in rows:
            cells = [ROW_TITLES[row]]
            if row in skipped:
                reason = skipped[row].replace('|', '/')
                if len(reason) > 90:  # the whole reason is in the notes below the table
                    reason = reason[:87] + '...'
                cells += [f'n/a ({reason})'] + ['n/a'] * (len(head) - 2)
                print('| ' + ' | '.join(cells) + ' |')
                continue
            for m, group, _, ref_row, form in cols:
                if group in ctx.col_na:
                    cells.append(f'n/a ({ctx.col_na[group]})')
                elif (row == 'direct' and m in PROXY_ONLY) or (m == 'kernel_share' and not row.startswith('skproxy')):
                    cells.append('—')
                elif (row, m) not in med:
                    cells.append('fail')
                else:
                    v = med[(row, m)]
                    ref = med.get((ref_row, m)) if ref_row else None
                    cells.append(form.format(v) + (f' ({v / ref:.2f}×)' if ref else ''))
            print('| ' + ' | '.join(cells) + ' |')
    print()
    print('Ratios in parentheses are to the direct row, except proxy CPU and memory (¹, ³), which are to HAProxy '
          '(direct has no proxy process). A ratio is missing when its reference row was not run or failed.')
    if used & {'iperf', 'wrk', 'wrk-close'}:
        print('¹ utime+stime of every thread (/proc/PID/task/*/stat) of every process of the proxy over the run '
              '(per GB: both iperf3 runs, per GB received by the iperf3 server; per request or connection: the wrk '
              'run, per request wrk completed). Kernel work done in softirq or kworker context (the sockmap '
              'redirect) is not charged to the proxy: compare ² for that.')
        print('² whole host, busy jiffies of /proc/stat (user+nice+system+irq+softirq) over the same window; '
              'includes the load tool (iperf3, wrk) and the backend.')
    if 'memory' in used:
        limit = ''
        if ctx.idle_limited:
            limit = (f' Held {ctx.idle_conns}, not 10,000: RLIMIT_NOFILE here is {ctx.nofile} and cannot be raised, '
                     'and a single-process proxy needs two descriptors per proxied connection.')
        print(f'³ user-space memory: (summed VmRSS of all proxy processes with {ctx.idle_conns} idle proxied '
              f'connections − the same before) / {ctx.idle_conns}. Each connection echoed one byte end to end '
              f'before it counted. Kernel socket memory is not included.{limit}')
    if 'wrk' in used:
        print(f'⁴ wrk -t2 -c64 -d{ctx.wrk_s}s, GET / of a {len(HTTP_BODY)}-byte body from a local nginx '
              '(1 worker, HTTP/1.1 keep-alive); the proxies forward TCP to it.')
    if 'wrk-close' in used:
        print(f'⁵ the same wrk run with the header "Connection: close": every request is a new connection, '
              'so requests/s = connections/s.')
    if 'reqresp' in used:
        print(f'⁶ skproxy_bench_reqresp: {ctx.rr_conns} connections to the echo backend, each sends '
              f'{ctx.rr_size} B and waits for the {ctx.rr_size} B echo, then the next, for {ctx.rr_seconds} s.')
    if 'reqresp-bulk' in used:
        print(f'⁸ the same, but each connection first echoes {ctx.rr_bulk >> 20} MiB of bulk (untimed): traffic that '
              'an adaptive data path moves into the kernel and must move back out for its small messages.')
    if 'iperf' in used:
        print('⁷ skproxy rows: of the bytes skproxy moved during iperf3 -P1, the share counted on the kernel path '
              '(deltas of skproxy_bytes_total{path="kernel"} and {path="user"} from its /metrics).')
    all_notes = [(row, f'n/a: {skipped[row]}') for row in rows if row in skipped and len(skipped[row]) > 90]
    all_notes += [(row, n) for row in rows for n in notes[row]]
    if all_notes:
        print()
        print('Notes:')
        for row, n in all_notes:
            print(f'- {ROW_TITLES[row]}: {n}')


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--rows', default=','.join(ALL_ROWS))
    ap.add_argument('--columns', default=','.join(ALL_COLUMNS),
                    help='groups of figures to measure: ' + ','.join(ALL_COLUMNS))
    ap.add_argument('--skproxy', default=None)
    ap.add_argument('--baseline', default=None, help='another skproxy binary: adds a "-baseline" row after '
                    'each skproxy row, run with it')
    ap.add_argument('--build', required=True)
    ap.add_argument('--idle-conns', type=int, default=0, help='override the idle connection count')
    ap.add_argument('--json', help='also write every raw per-rep record to this JSON file')
    ap.add_argument('--tmp', required=True)
    ap.add_argument('--pidfile', required=True)
    args = ap.parse_args()
    args.skproxy = args.skproxy or os.path.join(args.build, 'skproxy')
    rows = [r.strip() for r in args.rows.split(',') if r.strip()]
    bad = [r for r in rows if r not in ALL_ROWS]
    if bad or not rows or args.reps < 1:
        ap.error(f'rows must be from {",".join(ALL_ROWS)}; got {bad or "none"}; reps >= 1')
    args.columns = [c.strip() for c in args.columns.split(',') if c.strip()]
    bad = [c for c in args.columns if c not in ALL_COLUMNS]
    if bad or not args.columns:
        ap.error(f'columns must be from {",".join(ALL_COLUMNS)}; got {bad or "none"}')
    # Keep the documented row order whatever order was asked.
    rows = [r for r in ALL_ROWS if r in rows]
    if args.baseline:
        rows = [x for r in rows for x in ([r, r + '-baseline'] if r.startswith('skproxy-') else [r])]
        for r, base in BASELINE_ROWS.items():
            ROW_BASE[r] = base
            ROW_TITLES[r] = ROW_TITLES[r[:-len('-baseline')]] + ' (baseline)'

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = Ctx(args)
    ports = list(BACKEND_PORTS.values())
    for row in rows:
        if row != 'direct':
            ports += [ROW_BASE[row] + 1 + i for i in range(len(ROUTES))] + [ROW_BASE[row] + 9]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        sys.exit(f'ports already in use on {HOST}: {busy}; stop whatever holds them and retry')

    results = {r: [] for r in rows}
    notes = {r: [] for r in rows}
    skipped = {}
    ctx.load_before = background_load()
    try:
        ctx.start_backends()
        for rep in range(args.reps):
            # Every other repetition runs the rows backwards: on a busy host the row that runs first in a
            # repetition was measured up to 26% faster than the same binary run second, and without this the
            # auto row would always run after the userspace row it is compared with.
            for row in (rows if rep % 2 == 0 else rows[::-1]):
                if row in skipped:
                    continue
                log(f'rep {rep + 1}/{args.reps}: {row}')
                res, n = run_row(ctx, row)
                if res is None:
                    skipped[row] = n[0]
                    log(f'{row}: n/a ({n[0]})')
                    continue
                results[row].append(res)
                notes[row].extend(f'rep {rep + 1}: {x}' if args.reps > 1 else x for x in n)
                if args.json:
                    with open(args.json, 'a') as f:
                        f.write(json.dumps(dict(rep=rep, row=row, notes=n, **res)) + '\n')
    finally:
        ctx.procs.stop_all()
    report(ctx, rows, results, notes, skipped)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        log('interrupted; every process this run started has been stopped')
        sys.exit(130)
