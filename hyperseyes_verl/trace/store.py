"""Per-prompt TRACE references that only ever get stricter.

Keys are stable prompt keys (`data_source/index`, see `prompt_key`), never verl's per-step uid. During an
epoch the store only *observes* (key, correct, rounds, searches); references are frozen so every rollout of
the epoch is scored against the same bar. At the epoch boundary `end_epoch` tightens in one vectorised pass:

    ref ← lexmin(ref, lexmin{(rounds, searches) of this epoch's correct rollouts with rounds ≥ 1})

(rounds first, searches break ties; -1 = no reference), optionally skipping warm-up epochs and prompts with
fewer than `min_correct` correct observations. Monotone: a reference is never loosened.

Memory: one dict entry per key plus five int32 columns, so 1M prompts ≈ 150 MB and a tightening pass over
1M references takes milliseconds (bench/bench_trace_store.py).
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

NONE = -1  # "no reference"
_UNSEEN = np.iinfo(np.int32).max  # candidate sentinel: no correct rollout with rounds >= 1 this epoch
_FORMAT = 1
_FILE_RE = re.compile(r"^step_(\d+)\.npz$")
_TEMP_RE = re.compile(r"^\.step_\d+\..*\.tmp$")  # what `save` writes before its os.replace
_TEMP_OWNER_RE = re.compile(r"^\.step_\d+\.(\w+)-(\d+)\.")  # host and pid of the writer, in the temp name
_HOST = re.sub(r"\W", "_", socket.gethostname()) or "host"
ORPHAN_AGE_S = 3600.0  # a temp file untouched this long is an orphan whoever wrote it (a save takes seconds)
# the per-key int32 columns and the value of a fresh slot
_COLUMNS = {"ref_r": NONE, "ref_s": NONE, "cand_r": _UNSEEN, "cand_s": _UNSEEN, "n_correct": 0}
_MIN_CAPACITY = 1024


class StoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    warmup_epochs: int = Field(0, ge=0, description="epoch ends that do not tighten (tightening too early stalls "
                               "learning); their observations are discarded")
    min_correct: int = Field(1, ge=1, description="correct rollouts (rounds >= 1) a prompt needs in an epoch "
                             "before its reference may tighten")
    dir: str | None = Field(None, description="where snapshots go; default <trainer.default_local_dir>/hyperseyes_refs")
    keep_last: int = Field(0, ge=0, description="snapshots kept (0 = all)")
    use_ray: bool = Field(True, description="share one store through a named Ray actor when Ray is initialized")
    actor_name: str = Field("hyperseyes_trace_refs", description="name of the shared Ray actor")
    namespace: str | None = Field(None, description="Ray namespace of the actor (None = the job's)")
    detached: bool = Field(False, description="detached actor: outlives the driver (resume across jobs)")


@dataclass(frozen=True)
class RefInfo:
    """A prompt's reference as seen by a reward worker, plus the shared λ state."""

    rounds: int  # -1 = none
    searches: int  # -1 = none
    lam: float | None  # adaptive λ (None until set)
    epoch: int  # epoch ends seen so far


def _lex_less(r1: int, s1: int, r2: int, s2: int) -> bool:
    """(r1, s1) < (r2, s2) with -1 meaning +inf."""
    big = _UNSEEN
    r1, s1 = (big if r1 < 0 else r1), (big if s1 < 0 else s1)
    r2, s2 = (big if r2 < 0 else r2), (big if s2 < 0 else s2)
    return (r1, s1) < (r2, s2)


class ReferenceStore:
    """The pure store. Thread-safe; one owner per training job: this process (`trace.shared.StoreHandle`) or the
    named Ray actor of `hyperseyes_verl.verl.store_actor`."""

    def __init__(self, config: StoreConfig | None = None):
        self.config = config or StoreConfig()
        self._lock = threading.Lock()
        self._set_state(_empty_state())
        self._swept: set[str] = set()  # directories already cleared of orphan temp files by this store

    # ---- registration and observation (during an epoch) -----------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def _reset_epoch_sums(self) -> None:
        self._obs = 0
        self._sum_correct_rounds = 0
        self._n_correct_all = 0
        self._sum_ref_of_correct = 0
        self._n_ref_of_correct = 0

    def _grow(self, need: int) -> None:
        cap = len(self._ref_r)
        if need <= cap:
            return
        self._alloc(max(need, 2 * cap), keep=cap)

    def _alloc(self, cap: int, keep: int) -> None:
        """Fresh columns of `cap` slots; the first `keep` slots copied from the current ones."""
        for name, fill in _COLUMNS.items():
            arr = np.full(cap, fill, np.int32)
            if keep:
                arr[:keep] = getattr(self, f"_{name}")[:keep]
            setattr(self, f"_{name}", arr)

    def _register(self, key: str, init_rounds: int, init_searches: int) -> int:
        slot = self._slot.get(key)
        if slot is None:
            if not isinstance(key, str) or not key or "\n" in key:
                raise ValueError(f"prompt key {key!r} must be a non-empty string without newlines")
            slot = len(self._keys)
            self._grow(slot + 1)
            self._slot[key] = slot
            self._keys.append(key)
        # the dataset's reference can only tighten what is stored (e.g. after a restore)
        r, s = int(init_rounds), int(init_searches)
        if r >= 0 and _lex_less(r, s, int(self._ref_r[slot]), int(self._ref_s[slot])):
            self._ref_r[slot], self._ref_s[slot] = r, s
        return slot

    def _info(self, slot: int) -> RefInfo:
        return RefInfo(int(self._ref_r[slot]), int(self._ref_s[slot]), self.lam, self.epoch)

    def reference(self, key: str, init_rounds: int = NONE, init_searches: int = NONE) -> RefInfo:
        with self._lock:
            return self._info(self._register(key, init_rounds, init_searches))

    def peek(self, key: str) -> RefInfo | None:
        """The reference of a known key, without registering it."""
        with self._lock:
            slot = self._slot.get(key)
            return None if slot is None else self._info(slot)

    def record(self, key: str, init_rounds: int, init_searches: int, correct: bool, rounds: int,
               searches: int) -> RefInfo:
        """Observe one training rollout and return the reference it is scored against (one round trip)."""
        with self._lock:
            slot = self._register(key, init_rounds, init_searches)
            info = self._info(slot)
            self._observe(slot, bool(correct), int(rounds), int(searches))
            return info

    def record_many(self, rows: Iterable[tuple[str, int, int, bool, int, int]]) -> list[RefInfo]:
        return [self.record(*row) for row in rows]

    def _observe(self, slot: int, correct: bool, rounds: int, searches: int) -> None:
        if rounds < 0 or searches < 0:
            raise ValueError(f"observation with rounds={rounds}, searches={searches}: counts must be >= 0")
        self._obs += 1
        if not correct or rounds < 1:  # a correct answer without tools sets no bar on tool use
            return
        self._n_correct[slot] += 1
        self._sum_correct_rounds += rounds
        self._n_correct_all += 1
        if self._ref_r[slot] >= 0:
            self._sum_ref_of_correct += int(self._ref_r[slot])
            self._n_ref_of_correct += 1
        if _lex_less(rounds, searches, int(self._cand_r[slot]), int(self._cand_s[slot])):
            self._cand_r[slot], self._cand_s[slot] = rounds, searches

    # ---- epoch boundary -------------------------------------------------------------------------------------
    def end_epoch(self) -> dict[str, float]:
        """Tighten (unless in warm-up), reset the epoch's observations, return metrics."""
        with self._lock:
            n = len(self._keys)
            ref_r, ref_s = self._ref_r[:n], self._ref_s[:n]
            cand_r, cand_s = self._cand_r[:n], self._cand_s[:n]
            tightened = 0
            in_warmup = self.epoch < self.config.warmup_epochs
            if not in_warmup and n:
                eligible = (self._n_correct[:n] >= self.config.min_correct) & (cand_r != _UNSEEN)
                rr = np.where(ref_r < 0, _UNSEEN, ref_r)
                rs = np.where(ref_s < 0, _UNSEEN, ref_s)
                better = eligible & ((cand_r < rr) | ((cand_r == rr) & (cand_s < rs)))
                tightened = int(better.sum())
                ref_r[better] = cand_r[better]
                ref_s[better] = cand_s[better]
            metrics = {
                "trace/refs_tightened": float(tightened),
                "trace/refs_warmup": float(in_warmup),
                "trace/observations": float(self._obs),
                "trace/correct_rounds_mean": self._sum_correct_rounds / self._n_correct_all
                if self._n_correct_all else float("nan"),
                "trace/correct_ref_mean": self._sum_ref_of_correct / self._n_ref_of_correct
                if self._n_ref_of_correct else float("nan"),
            }
            cand_r[:] = _UNSEEN
            cand_s[:] = _UNSEEN
            self._n_correct[:n] = 0
            self._reset_epoch_sums()
            self.epoch += 1
            metrics.update(self._summary_unlocked())
            return metrics

    def reset(self) -> None:
        """Forget everything (a fresh run that finds no snapshot to resume from)."""
        with self._lock:
            self._set_state(_empty_state())

    def set_lambda(self, lam: float) -> None:
        with self._lock:
            self.lam = float(lam)

    def _summary_unlocked(self) -> dict[str, float]:
        n = len(self._keys)
        has = self._ref_r[:n] >= 0
        return {
            "trace/refs_total": float(n),
            "trace/ref_coverage": float(has.mean()) if n else 0.0,
            "trace/ref_mean": float(self._ref_r[:n][has].mean()) if has.any() else float("nan"),
            "trace/epoch": float(self.epoch),
            **({"trace/lambda": self.lam} if self.lam is not None else {}),
        }

    def summary(self) -> dict[str, float]:
        with self._lock:
            return self._summary_unlocked()

    # ---- bulk load, export ----------------------------------------------------------------------------------
    def load_initial(self, rows: Iterable[tuple[str, int, int]]) -> int:
        """Register (key, ref_rounds, ref_searches) from a dataset; returns the number of rows."""
        count = 0
        with self._lock:
            for key, r, s in rows:
                self._register(key, r, s)
                count += 1
        return count

    def rows(self) -> Iterator[dict]:
        with self._lock:
            keys, r, s = list(self._keys), self._ref_r[: len(self._keys)].copy(), self._ref_s[: len(self._keys)].copy()
        for i, k in enumerate(keys):
            yield {"prompt_key": k, "ref_rounds": int(r[i]), "ref_searches": int(s[i])}

    # ---- persistence ----------------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        n = len(self._keys)
        blob = "\n".join(self._keys).encode("utf-8")
        meta = {"format": _FORMAT, "n": n, "epoch": self.epoch, "lam": self.lam,
                "sums": [self._obs, self._sum_correct_rounds, self._n_correct_all, self._sum_ref_of_correct,
                         self._n_ref_of_correct]}
        return {"keys": np.frombuffer(blob, np.uint8), "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
                **{name: getattr(self, f"_{name}")[:n] for name in _COLUMNS}}

    def save(self, directory: str, step: int) -> str:
        """Atomic snapshot `<directory>/step_<step>.npz` (temp file + fsync + os.replace + dir fsync)."""
        os.makedirs(directory, exist_ok=True)
        self._sweep(directory)
        with self._lock:
            arrays = {k: v.copy() for k, v in self._arrays().items()}
        final = os.path.join(directory, f"step_{int(step)}.npz")
        fd, tmp = tempfile.mkstemp(prefix=f".step_{int(step)}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)
        self._prune(directory)
        return final

    def _prune(self, directory: str) -> None:
        if not self.config.keep_last:
            return
        for _, path in snapshots(directory)[self.config.keep_last:]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def load(self, directory: str, step: int | None = None) -> int | None:
        """Replace the state with the newest readable snapshot at or before `step` (None = newest).

        Unreadable snapshots (a crash mid-write leaves only a temp file, but disks lie) are skipped with a
        warning. Returns the step loaded, or None when there is none (the state is then left unchanged).
        Temp files of writes that were killed are deleted.
        """
        self._sweep(directory)
        for snap_step, path in snapshots(directory):
            if step is not None and snap_step > step:
                continue
            try:
                self.load_file(path)
            except Exception as e:  # corrupt / truncated file: fall back to the previous one
                logger.warning("TRACE reference snapshot %s is unreadable (%s: %s); trying an older one",
                               path, type(e).__name__, e)
                continue
            return snap_step
        return None

    def load_file(self, path: str) -> None:
        """Replace the state with one snapshot file; an unreadable file raises and leaves the state unchanged."""
        state = _read(path)
        with self._lock:
            self._set_state(state)

    def _set_state(self, state: dict) -> None:
        keys, meta = state["keys"], state["meta"]
        n = len(keys)
        self._keys = keys
        self._slot = dict(zip(keys, range(n)))
        self._alloc(max(_MIN_CAPACITY, n), keep=0)
        for name in _COLUMNS:
            getattr(self, f"_{name}")[:n] = state[name]
        self.epoch = int(meta["epoch"])
        self.lam = meta["lam"]
        (self._obs, self._sum_correct_rounds, self._n_correct_all, self._sum_ref_of_correct,
         self._n_ref_of_correct) = (int(x) for x in meta["sums"])


    def _sweep(self, directory: str) -> None:
        """Once per directory (on start: the first load or save), delete orphan temp files: they are never a
        snapshot, and a process killed mid-write leaves one each time."""
        key = os.path.abspath(directory)
        if key in self._swept:
            return
        self._swept.add(key)
        if (removed := remove_orphan_temp_files(directory)):
            logger.info("removed %d orphan TRACE snapshot temp file(s) from %s (writes that were killed)",
                        removed, directory)


def remove_orphan_temp_files(directory: str, max_age_s: float = ORPHAN_AGE_S) -> int:
    """Delete the `.step_<n>.*.tmp` files that interrupted saves left in `directory`; returns how many.

    Several processes may save into one folder, so a temp file is deleted only when its writer is gone: the
    name says it was this host's process and that process no longer exists, or it is older than `max_age_s`
    (another host's writer, or a name without an owner)."""
    if not os.path.isdir(directory):
        return 0
    removed, now = 0, time.time()
    for name in os.listdir(directory):
        if not _TEMP_RE.match(name):
            continue
        path = os.path.join(directory, name)
        owner = _TEMP_OWNER_RE.match(name)
        try:
            dead = owner is not None and owner.group(1) == _HOST and not _pid_alive(int(owner.group(2)))
            if dead or now - os.path.getmtime(path) > max_age_s:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:  # its writer finished (os.replace) or another sweeper got it first
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def snapshots(directory: str) -> list[tuple[int, str]]:
    """(step, path) of the snapshots in `directory`, newest first. Temp files are ignored."""
    if not os.path.isdir(directory):
        return []
    out = [(int(m.group(1)), os.path.join(directory, name)) for name in os.listdir(directory)
           if (m := _FILE_RE.match(name))]
    return sorted(out, reverse=True)


def _read(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"unknown snapshot format {meta.get('format')!r} (this version reads {_FORMAT})")
        blob = z["keys"].tobytes().decode("utf-8")
        keys = blob.split("\n") if meta["n"] else []
        state = {"keys": keys, "meta": meta, **{name: z[name].copy() for name in _COLUMNS}}
    lengths = {name: len(state[name]) for name in ("keys", *_COLUMNS)}
    if any(n != meta["n"] for n in lengths.values()):
        raise ValueError(f"inconsistent snapshot {path}: meta says {meta['n']} keys, lengths are {lengths}")
    return state


def _empty_state() -> dict:
    return {"keys": [], "meta": {"epoch": 0, "lam": None, "sums": [0, 0, 0, 0, 0]},
            **{name: np.zeros(0, np.int32) for name in _COLUMNS}}


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
