"""Process plumbing for the benchmark: children in their own groups, readiness, /proc accounting."""
import http.client
import os
import signal
import socket
import subprocess
import threading
import time


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Proc:
    """A child process in its own process group, logging to a file; stopped by its own id."""

    def __init__(self, name, cmd, logdir, env=None, cwd=None):
        self.name = name
        self.logpath = os.path.join(logdir, f"{name}.log")
        self.logfile = open(self.logpath, "wb")
        self.popen = subprocess.Popen(cmd, stdout=self.logfile, stderr=subprocess.STDOUT, env=env,
                                      cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=20):
        try:
            with open(self.logpath, "rb") as fh:
                return b"\n".join(fh.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.alive():
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.pid, sig)  # our own child's group (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.logfile.close()

    def worker_pid(self, timeout=20):
        """The first child of a gunicorn master (the one worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as fh:
                    kids = fh.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no gunicorn worker appeared")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(proc, port, path, timeout=60):
    """Until the server answers any HTTP status on `path`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer on port {port}:\n{proc.tail()}")


def read_status(pid):
    """VmRSS/VmHWM in MB from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times():
    """{cpu index: (busy jiffies, total jiffies)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                vals = [int(v) for v in vals[:8]]
                idle = vals[3] + vals[4]  # idle + iowait
                out[int(name[3:])] = (sum(vals) - idle, sum(vals))
    return out


def core_busy(before, after):
    """Busy % per core between two core_times() snapshots."""
    return {cpu: round(100.0 * (after[cpu][0] - b[0]) / max(1, after[cpu][1] - b[1]), 1)
            for cpu, b in before.items() if cpu in after}


class RSSSampler(threading.Thread):
    """Max VmRSS of one process, sampled every 50 ms while the block runs."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_event = threading.Event()
        self.peak = 0.0

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.peak = max(self.peak, read_status(self.pid).get("VmRSS", 0.0))
            except OSError:
                return
            self.stop_event.wait(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join()



def busy_processes(threshold=20.0, seconds=1.0):
    """Other processes using noticeable CPU right now (the numbers are only as quiet as the machine)."""
    def snapshot():
        out = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    out[int(pid)] = cpu_seconds(int(pid))
                except (OSError, IndexError, ValueError):
                    pass
        return out
    a = snapshot()
    time.sleep(seconds)
    b = snapshot()
    busy = []
    for pid, t in b.items():
        pct = 100.0 * (t - a.get(pid, t)) / seconds
        if pct >= threshold and pid != os.getpid():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:80]
            except OSError:
                cmd = "?"
            busy.append(f"{pid} {pct:.0f}% {cmd}")
    return busy


def raise_nofile(need):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
        soft = hard
    if soft < need:
        log(f"warning: open-files limit {soft} < ~{need} needed for {need // 3} streams; "
            "raise it (ulimit -n) or use --streams")
    return soft
