#!/usr/bin/env python3
"""RSS per idle keep-alive client connection, for jwtgate and nginx.

    benches/idle_memory.py [N]        # default N = 1000

Starts the bench upstream, then for each target: a fresh server on loopback,
one GET on each of N connections (so every connection has served a request,
as a keep-alive client's would), then all N left idle; RSS (VmRSS of the
server's processes) before and after, and the difference per connection.
Needs `cargo build --release --bin jwtgate --example bench_upstream`; nginx
is measured when installed (one worker, proxy_pass to the same upstream).
"""
import os, socket, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SETTLE = float(os.environ.get("SETTLE", "2"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def measure(name, port, pids):
    wait_port(port)
    time.sleep(0.5)
    before = rss_kib(pids)
    conns = []
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += s.recv(65536)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"{name}: {head[:60]!r}")
        conns.append(s)
    # jwtgate lets an idle connection's buffers go after 1 s (src/idle.rs).
    time.sleep(SETTLE)
    after = rss_kib(pids)
    for s in conns:
        s.close()
    per = (after - before) / N
    print(f"| {name} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {per:.1f} KiB |", flush=True)


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp()
    procs = []
    try:
        up_port = free_port()
        procs.append(subprocess.Popen([os.path.join(RELEASE, "examples", "bench_upstream"), f"127.0.0.1:{up_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(up_port)
        print(f"{N} idle keep-alive connections, each after one request\n")
        print("| server | RSS before | RSS after | per connection |")
        print("| --- | ---: | ---: | ---: |")
        variants = [("jwtgate 1 worker, public route", "")]
        for name, extra in variants:
            port = free_port()
            config = os.path.join(work, f"{port}.toml")
            with open(config, "w") as f:
                f.write(f'[server]\nlisten = "127.0.0.1:{port}"\nworker_threads = 1\nmax_connections = {N + 100}\n{extra}'
                        f'[upstream]\nurl = "http://127.0.0.1:{up_port}"\n'
                        f'[[issuers]]\nissuer = "https://issuer.example/"\naudiences = ["api"]\n'
                        f'jwks_url = "https://issuer.example/keys"\n'
                        f'[[routes]]\npath = "/"\nauth = "public"\n')
            p = subprocess.Popen([os.path.join(RELEASE, "jwtgate"), "run", "-c", config],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
            procs.append(p)
            measure(name, port, [p.pid])
            p.terminate()
            p.wait()
        if subprocess.run(["sh", "-c", "command -v nginx"], capture_output=True).returncode == 0:
            port = free_port()
            conf = os.path.join(work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""daemon off; worker_processes 1; pid {work}/nginx.pid; error_log /dev/null crit;
events {{ worker_connections {N + 200}; }}
http {{ access_log off; keepalive_requests 100000; keepalive_timeout 300s;
  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
}}
""")
            p = subprocess.Popen(["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port)
            time.sleep(0.5)
            measure("nginx 1 worker, plain proxy", port, [p.pid] + children(p.pid))
            p.terminate()
            p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


main()
