"""The in-process limiter backend: the Redis script's semantics for one worker, under one lock."""
import threading


class LocalBackend:
    """Limits per process (no Redis, or Redis down with fail-open); same arguments as RedisBackend."""

    def __init__(self):
        self.lock = threading.Lock()
        self.logs = {}      # name -> list of [score, id, amount], in score order
        self.sums = {}      # name -> int
        self.values = {}    # name -> [int, expires_at_ms]
        self.entries = {}   # (token log name, id) -> its entry, so settling does not scan the log

    def _trim(self, name, upto):
        log = self.logs.get(name)
        if not log:
            return 0
        cut = 0
        while cut < len(log) and log[cut][0] <= upto:
            cut += 1
        if cut:
            self.sums[name] = self.sums.get(name, 0) - sum(entry[2] for entry in log[:cut])
            for entry in log[:cut]:
                self.entries.pop((name, entry[1]), None)
            del log[:cut]
        if not log:
            self.logs.pop(name, None)
            self.sums.pop(name, None)
        return self.sums.get(name, 0)

    def _oldest(self, name, now, window):
        log = self.logs.get(name)
        # min(): an entry stamped by a caller whose clock ran ahead frees no later than a window away
        return min(log[0][0] + window - now, window) if log else window

    def _value(self, name, now):
        entry = self.values.get(name)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self.values[name]
            return None
        return None if entry is None else entry[0]

    def acquire(self, keys, args):
        (now, window, rid, rpm, tpm, mrpm, mtpm, par, need, lease, budget, cost,
         budget_reset) = args
        req, tok, _, mreq, mtok, _, leases, spend_key, held_key, _ = keys
        with self.lock:
            return self._acquire(now, window, rid, (req, rpm), (mreq, mrpm), (tok, tpm), (mtok, mtpm),
                                 (leases, par), need, lease, (spend_key, held_key, budget, cost),
                                 budget_reset)

    def _acquire(self, now, window, rid, req, mreq, tok, mtok, par, need, lease, budget, reset):
        spend_key, held_key, limit_nano, cost = budget
        if limit_nano >= 0 and self._value(spend_key, now) is None:
            return [2]
        head = {"hl": -1, "hr": -1, "hreset": 0, "tl": -1, "tr": -1, "treset": 0}

        def refuse(reason, retry):
            return [0, reason, max(retry, 1), head["hl"], head["hr"], head["hreset"],
                    head["tl"], head["tr"], head["treset"]]

        if par[1] >= 0:
            self._trim(par[0], now)
            if len(self.logs.get(par[0], ())) >= par[1]:
                return refuse("parallel", 1000)
        if limit_nano >= 0:
            if self._value(spend_key, now) + self._trim(held_key, now) >= limit_nano:
                return refuse("budget", reset)
        blocked, retry = None, 0
        for name, limit in (req, mreq):
            if limit < 0:
                continue
            self._trim(name, now - window)
            log = self.logs.get(name, [])
            if len(log) >= limit:
                wait = min(log[len(log) - limit][0] + window - now, window) if log else window
                if not blocked or wait > retry:
                    blocked, retry = "requests", wait
            left = max(limit - len(log) - 1, -1)
            if head["hr"] < 0 or left < head["hr"]:
                head.update(hl=limit, hr=left, hreset=self._oldest(name, now, window))
        held = [0, 0]
        for i, (name, limit) in enumerate((tok, mtok)):
            if limit < 0:
                continue
            used = self._trim(name, now - window)
            take = held[i] = min(need, limit)
            if used + take > limit:
                deficit, freed, wait = used + take - limit, 0, window
                for score, _, amount in self.logs.get(name, []):
                    freed += amount
                    if freed >= deficit:
                        wait = min(score + window - now, window)
                        break
                if not blocked or wait > retry:
                    blocked, retry = "tokens", wait
            left = limit - used - take
            if head["tr"] < 0 or left < head["tr"]:
                head.update(tl=limit, tr=left, treset=self._oldest(name, now, window))
        if blocked:
            head["hr"], head["tr"] = max(head["hr"], 0), max(head["tr"], 0)
            return refuse(blocked, retry)
        for name, limit in (req, mreq):
            if limit >= 0:
                self.logs.setdefault(name, []).append([now, rid, 0])
        for i, (name, limit) in enumerate((tok, mtok)):
            if limit >= 0:
                entry = self.entries[(name, rid)] = [now, rid, held[i]]
                self.logs.setdefault(name, []).append(entry)
                self.sums[name] = self.sums.get(name, 0) + held[i]
        if par[1] >= 0:
            self._insert(par[0], [now + lease, rid, 0])
        if limit_nano >= 0:
            self._insert(held_key, [now + lease, rid, cost])
            self.sums[held_key] = self.sums.get(held_key, 0) + cost
        return [1, "", 0, head["hl"], head["hr"], head["hreset"], head["tl"], head["tr"],
                head["treset"], held[0], held[1]]

    def _insert(self, name, entry):
        log = self.logs.setdefault(name, [])
        log.append(entry)
        log.sort(key=lambda item: item[0])

    def finish(self, keys, args, wait=True):
        rid, _, _, actual_key, actual_model, _, actual_cost, has_tpm, has_mtpm, has_budget = args
        with self.lock:
            self._remove(keys[6], rid)
            for flag, name, actual in ((has_tpm, keys[1], actual_key), (has_mtpm, keys[4], actual_model)):
                entry = self.entries.get((name, rid)) if flag == "1" else None
                if entry is not None:
                    self.sums[name] += int(actual) - entry[2]
                    entry[2] = int(actual)
            if has_budget == "1":
                removed = self._remove(keys[8], rid)
                if removed is not None:
                    self.sums[keys[8]] = self.sums.get(keys[8], 0) - removed[2]
                if keys[7] in self.values:
                    self.values[keys[7]][0] += int(actual_cost)

    def _remove(self, name, rid):
        log = self.logs.get(name, [])
        for index, entry in enumerate(log):
            if entry[1] == rid:
                return log.pop(index)
        return None

    def seed(self, key, nano, ttl_ms, now_ms=0):
        with self.lock:
            # a new period began somewhere: forget the counters of periods that are over
            for name in [n for n, (_, until) in self.values.items() if until is not None and until <= now_ms]:
                del self.values[name]
            if self._value(key, now_ms) is None:
                self.values[key] = [int(nano), now_ms + ttl_ms if ttl_ms else None]

    def spend(self, key, now_ms=0):
        with self.lock:
            return self._value(key, now_ms)
