#!/usr/bin/env python3
"""Soak test of `ringwire echo` / `ringwire cat` on a bad day (run by scripts/soak.sh).

Long-lived echo servers over unix, tcp, websocket, redis (a private redis-server) and amqp (a private
vhost on the machine's RabbitMQ), and a fresh shm
echo per shm round, serve `ringwire cat` clients carrying random binary lines for SECONDS. Along the way
some clients are SIGKILLed mid-stream (a producer dying with frames in flight), the Redis server is told
to kill its pub/sub connections (the echo's subscriber and the clients' reconnect), and shm servers are
stopped with SIGTERM. Every completed round must come back byte for byte on the reliable transports;
on Redis pub/sub (at most once) only losses are allowed, and counted. (amqp rounds are never killed
mid-stream: a killed client's replies would wait in the shared reply queue for the next client, as
RabbitMQ is meant to keep them.) At the end the long-lived servers'
descriptors, threads and RSS are back to their baseline (RSS within a margin), /dev/shm holds what it
held before, and no process is left. Exit status 0 when every check holds.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("RINGWIRE_BIN", os.path.join(ROOT, "target", "debug", "ringwire"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_stat(pid):
    status = open(f"/proc/{pid}/status").read()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return fds, int(fields["Threads"].strip()), int(fields["VmRSS"].split()[0])


def start_echo(transport, listen):
    p = subprocess.Popen([BIN, "echo", "--transport", transport, "--listen", listen],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    if not line.startswith("listening on "):
        raise SystemExit(f"soak: echo {transport} did not start: {line!r} {p.stderr.read()!r}")
    return p, line.strip()[len("listening on "):]


def lines_of(rng, n):
    out = []
    for _ in range(n):
        k = rng.randrange(0, 200)
        out.append(bytes(rng.choice(range(256)) for _ in range(k)).replace(b"\n", b"\r"))
    return out


def cat(transport, addr, payload, kill_after=None, timeout="10"):
    p = subprocess.Popen([BIN, "cat", "--transport", transport, "--connect", addr, "--timeout", timeout],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after is not None:
        p.stdin.write(payload[:kill_after])
        p.stdin.flush()
        p.kill()
        p.communicate()
        return None, None
    out, err = p.communicate(payload, timeout=120)
    return p.returncode, out


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600
    rng = random.Random(int(os.environ.get("SOAK_SEED", time.time())))
    shm_before = set(os.listdir("/dev/shm"))
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            break
        time.sleep(0.05)
    sock = f"/tmp/ringwire-soak-{os.getpid()}.sock"
    servers = {}
    servers["tcp"] = start_echo("tcp", "127.0.0.1:0")
    servers["unix"] = start_echo("unix", sock)
    servers["websocket"] = start_echo("websocket", "ws://127.0.0.1:0/soak")
    servers["redis"] = start_echo("redis", f"redis://127.0.0.1:{port}/soak")
    vhost = f"ringwire-soak-{os.getpid()}"
    amqp = subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True).returncode == 0
    if amqp:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True)
        servers["amqp"] = start_echo("amqp", f"amqp://127.0.0.1:5672/{vhost}/soak")
    else:
        print("soak: no RabbitMQ (rabbitmqctl add_vhost failed): the amqp rounds are skipped")
    stats = {"rounds": 0, "lines": 0, "killed": 0, "redis_lost": 0, "redis_kills": 0, "mismatch": []}
    baseline = {}
    deadline = time.time() + seconds
    next_redis_kill = time.time() + 5
    warm = True
    try:
        while warm or time.time() < deadline:
            for t in ["tcp", "unix", "websocket", "redis", "shm"] + (["amqp"] if amqp else []):
                lines = lines_of(rng, rng.randrange(1, 100))
                payload = b"".join(l + b"\n" for l in lines)
                shm = None
                if t == "shm":
                    name = f"ringwire-soak-{os.getpid()}-{stats['rounds']}"
                    shm = start_echo("shm", name)
                    addr = name
                else:
                    addr = servers[t][1]
                if not warm and t != "amqp" and rng.random() < 0.15:
                    cat(t, addr, payload, kill_after=len(payload) // 2)
                    stats["killed"] += 1
                else:
                    code, out = cat(t, addr, payload)
                    stats["lines"] += len(lines)
                    got = out.split(b"\n")[:-1] if out else []
                    if t == "redis":
                        # At most once: what arrived is the sent lines in order, some perhaps missing.
                        it = iter(lines)
                        if not all(any(g == s for s in it) for g in got):
                            stats["mismatch"].append((t, "reordered or altered"))
                        stats["redis_lost"] += len(lines) - len(got)
                    elif code != 0 or got != lines:
                        stats["mismatch"].append((t, code, len(got), len(lines)))
                if shm is not None:
                    shm[0].send_signal(signal.SIGTERM)
                    shm[0].wait(timeout=30)
                stats["rounds"] += 1
                if not warm and time.time() >= next_redis_kill:
                    subprocess.run(["redis-cli", "-p", str(port), "client", "kill", "type", "pubsub"],
                                   capture_output=True)
                    stats["redis_kills"] += 1
                    next_redis_kill = time.time() + 5
            if warm:
                warm = False
                baseline = {t: proc_stat(p.pid) for t, (p, _) in servers.items()}
        # Settle: connections closed, threads ended.
        ok = True
        for t, (p, _) in servers.items():
            b = baseline[t]
            end = time.time() + 20
            while True:
                now = proc_stat(p.pid)
                back = now[0] <= b[0] and now[1] <= b[1] and now[2] <= b[2] * 1.5 + 16384
                if back or time.time() > end:
                    break
                time.sleep(0.1)
            print(f"soak: {t:9} fds {b[0]} -> {now[0]}, threads {b[1]} -> {now[1]}, RSS {b[2]} -> {now[2]} KiB"
                  f"{'' if back else '  NOT BACK TO BASELINE'}")
            ok &= back
            if p.poll() is not None:
                print(f"soak: the {t} echo exited ({p.returncode})")
                ok = False
    finally:
        for p, _ in servers.values():
            p.send_signal(signal.SIGTERM)
        for p, _ in servers.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.kill()
        redis.wait()
        if amqp:
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)
    shm_after = set(os.listdir("/dev/shm"))
    leaked = sorted(shm_after - shm_before)
    if leaked:
        print(f"soak: /dev/shm entries left behind: {leaked}")
        ok = False
    if os.path.exists(sock):
        print(f"soak: {sock} left behind")
        ok = False
    if stats["mismatch"]:
        print(f"soak: mismatches: {stats['mismatch'][:10]}")
        ok = False
    print(f"soak: {stats['rounds']} rounds, {stats['lines']} lines checked, {stats['killed']} clients killed "
          f"mid-stream, {stats['redis_kills']} Redis pub/sub connection kills, {stats['redis_lost']} lines lost "
          f"on redis pub/sub (at most once), {len(stats['mismatch'])} mismatches: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
