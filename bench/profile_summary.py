"""Summarize a py-spy `--format raw` (folded stacks) profile: where the worker's CPU time goes.

    py-spy record --pid <worker> -d 10 -r 200 --format raw -o /tmp/profile.txt
    python bench/profile_summary.py /tmp/profile.txt [--top 30] [--focus deltallm/]

Prints the functions with the largest inclusive share (time in the function and its callees) and
the largest self share, plus a coarse split by layer (gunicorn, Flask/Werkzeug, DeltaLLM,
requests/urllib3, http.client, gevent, marshmallow, other). Stacks of gevent's native threadpool
threads (the DNS resolver's; they mostly wait on a lock, which py-spy can count as busy) are left out
unless --all-threads: percentages are of the worker's hub thread, where all request handling runs.
"""
import argparse
import collections
import re
import signal

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")
LAYERS = [  # first match wins, checked on the file path of the leaf-most frame that matches any
    ("deltallm", "deltallm/"),
    ("marshmallow", "marshmallow/"),
    ("flask/werkzeug", "flask/"),
    ("flask/werkzeug", "werkzeug/"),
    ("requests", "requests/"),
    ("urllib3", "urllib3/"),
    ("http.client", "http/client.py"),
    ("gunicorn", "gunicorn/"),
    ("gevent", "gevent/"),
]


def is_threadpool(frames):
    return any("gevent/threadpool.py" in file for _, file in frames)


def parse(path, all_threads=False):
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            frames = []
            for raw in stack.split(";"):
                m = FRAME.match(raw)
                frames.append((m["func"], m["file"]) if m else (raw, ""))
            if frames and frames[0][0].startswith("thread ("):
                frames = frames[1:]  # py-spy --threads prefix
            if frames and (all_threads or not is_threadpool(frames)):
                stacks.append((frames, n))
    return stacks


def layer_of(frames):
    """The layer of the innermost frame that belongs to a known library (else 'other')."""
    if frames[-1][0] == "Hub.run":
        return "gevent hub loop (libev/epoll, in C)"
    for func, file in reversed(frames):
        for name, marker in LAYERS:
            if marker in file:
                return name
    return "other"


def summarize(stacks, focus=None):
    total = sum(n for _, n in stacks)
    inclusive, self_time, layers = collections.Counter(), collections.Counter(), collections.Counter()
    for frames, n in stacks:
        seen = set()
        for func, file in frames:
            key = f"{func} ({file})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
        func, file = frames[-1]
        self_time[f"{func} ({file})"] += n
        layers[layer_of(frames)] += n
    if focus:
        inclusive = collections.Counter({k: v for k, v in inclusive.items() if focus in k})
    return total, inclusive, self_time, layers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--focus", help="only list inclusive entries whose file contains this")
    p.add_argument("--all-threads", action="store_true", help="keep gevent threadpool threads")
    opts = p.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is fine
    total, inclusive, self_time, layers = summarize(parse(opts.profile, opts.all_threads), opts.focus)
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples\n\nby layer (innermost library frame):")
    for name, n in layers.most_common():
        print(f"  {100.0 * n / total:5.1f}%  {name}")
    print(f"\ninclusive (function + callees), top {opts.top}:")
    for key, n in inclusive.most_common(opts.top):
        print(f"  {100.0 * n / total:5.1f}%  {key}")
    print(f"\nself (leaf frame), top {opts.top}:")
    for key, n in self_time.most_common(opts.top):
        print(f"  {100.0 * n / total:5.1f}%  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
