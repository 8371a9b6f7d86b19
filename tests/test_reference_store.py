"""Reference store: persistence, crash safety, several processes, export CLI, restore through trace_state."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from hyperseyes_verl.cli import main as cli_main
from hyperseyes_verl.trace.store import ReferenceStore, StoreConfig, snapshots


def _filled() -> ReferenceStore:
    s = ReferenceStore(StoreConfig(min_correct=1))
    s.reference("ds/0", 3, 6)
    s.reference("ds/1", -1, -1)
    s.record("ds/0", 3, 6, True, 2, 5)
    s.record("ds/0", 3, 6, True, 2, 4)  # ties on rounds broken by searches
    s.record("ds/0", 3, 6, True, 0, 0)  # no tools: ignored
    s.record("ds/1", -1, -1, False, 1, 1)  # wrong: ignored
    s.record("ds/1", -1, -1, True, 4, 4)
    return s


def test_tightening_by_rounds_then_searches_and_warmup():
    s = _filled()
    m = s.end_epoch()
    assert (s.peek("ds/0").rounds, s.peek("ds/0").searches) == (2, 4)
    assert (s.peek("ds/1").rounds, s.peek("ds/1").searches) == (4, 4)
    assert m["trace/refs_tightened"] == 2 and m["trace/ref_mean"] == 3.0 and m["trace/observations"] == 5
    assert m["trace/correct_rounds_mean"] == pytest.approx((2 + 2 + 4) / 3)
    # next epoch: a worse correct rollout never loosens
    s.record("ds/0", 3, 6, True, 3, 1)
    assert s.end_epoch()["trace/refs_tightened"] == 0 and s.peek("ds/0").rounds == 2

    w = ReferenceStore(StoreConfig(warmup_epochs=1, min_correct=2))
    w.record("k", -1, -1, True, 2, 2)
    w.record("k", -1, -1, True, 3, 3)
    assert w.end_epoch()["trace/refs_warmup"] == 1.0 and w.peek("k").rounds == -1  # warm-up epoch
    w.record("k", -1, -1, True, 2, 2)
    assert w.end_epoch()["trace/refs_tightened"] == 0  # only 1 correct < min_correct 2
    w.record("k", -1, -1, True, 2, 2)
    w.record("k", -1, -1, True, 1, 9)
    assert w.end_epoch()["trace/refs_tightened"] == 1 and w.peek("k").rounds == 1


def test_save_load_roundtrip_including_open_epoch(tmp_path):
    s = _filled()
    s.set_lambda(0.07)
    s.save(str(tmp_path), 10)
    r = ReferenceStore()
    assert r.load(str(tmp_path), 10) == 10
    assert list(r.rows()) == list(s.rows()) and r.lam == 0.07
    # the open epoch's observations survived: ending the epoch on the copy tightens like the original
    assert r.end_epoch() == s.end_epoch()


def test_load_picks_newest_at_or_before_step_and_reset(tmp_path):
    s = ReferenceStore()
    for step, rounds in ((5, 4), (10, 3), (15, 2)):
        s.record("a", rounds, rounds, False, 0, 0)
        s.save(str(tmp_path), step)
    r = ReferenceStore()
    assert r.load(str(tmp_path), 12) == 10 and r.peek("a").rounds == 3
    assert r.load(str(tmp_path)) == 15 and r.peek("a").rounds == 2
    assert r.load(str(tmp_path), 4) is None and r.peek("a").rounds == 2  # nothing earlier: unchanged
    r.reset()
    assert len(r) == 0 and r.peek("a") is None


def test_crash_between_write_and_rename_leaves_last_good_snapshot(tmp_path, monkeypatch):
    s = _filled()
    s.save(str(tmp_path), 1)
    s.end_epoch()

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        s.save(str(tmp_path), 2)
    monkeypatch.undo()
    assert [st for st, _ in snapshots(str(tmp_path))] == [1]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]  # temp file cleaned up
    # a process killed mid-write leaves a stray temp file; it is never read
    with open(tmp_path / ".step_3.abc.tmp", "wb") as f:
        f.write(b"PK\x03\x04 half")
    r = ReferenceStore()
    assert r.load(str(tmp_path)) == 1 and r.peek("ds/0").rounds == 3  # the pre-tightening state of step 1


def test_corrupt_newest_snapshot_falls_back_to_previous(tmp_path):
    s = _filled()
    s.save(str(tmp_path), 1)
    path = s.save(str(tmp_path), 2)
    with open(path, "r+b") as f:  # torn write on a lying disk
        f.truncate(40)
    r = ReferenceStore()
    assert r.load(str(tmp_path)) == 1 and len(r) == 2


def test_keep_last_prunes_old_snapshots(tmp_path):
    s = ReferenceStore(StoreConfig(keep_last=2))
    for step in range(1, 5):
        s.save(str(tmp_path), step)
    assert [st for st, _ in snapshots(str(tmp_path))] == [4, 3]


def test_bad_keys_and_counts_are_refused():
    s = ReferenceStore()
    with pytest.raises(ValueError, match="without newlines"):
        s.reference("a\nb")
    with pytest.raises(ValueError, match="counts must be >= 0"):
        s.record("a", -1, -1, True, -2, 0)


def _writer(directory: str, worker: int, n_keys: int) -> int:
    store = ReferenceStore()
    for i in range(n_keys):
        store.record(f"w{worker}/{i}", i % 5, i % 7, True, 1 + i % 3, i % 4)
    store.end_epoch()
    for step in range(5):
        store.save(directory, step)  # every worker writes the same step names
        other = ReferenceStore()
        assert other.load(directory) is not None  # never sees a half-written file
    return worker


def test_several_processes_saving_into_one_folder_never_corrupt(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        done = pool.starmap(_writer, [(str(tmp_path), w, 2000) for w in range(3)])
    assert sorted(done) == [0, 1, 2]
    for step, _ in snapshots(str(tmp_path)):
        r = ReferenceStore()
        assert r.load(str(tmp_path), step) == step
        owners = {k.split("/")[0] for k in (row["prompt_key"] for row in r.rows())}
        assert len(owners) == 1 and len(r) == 2000  # one whole writer's state, not a mix
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def _save_forever(directory: str, n_keys: int) -> None:
    store = ReferenceStore()
    for i in range(n_keys):
        store.record(f"k/{i}", 3, 3, True, 1 + i % 2, 1)
    step = 0
    while True:
        step += 1
        store.save(directory, step)


def test_process_killed_while_saving_leaves_a_loadable_snapshot(tmp_path):
    import signal
    import time

    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_save_forever, args=(str(tmp_path), 20_000), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while len(snapshots(str(tmp_path))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert snapshots(str(tmp_path)), "the writer never produced a snapshot"
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup handlers: whatever was half-written stays
    finally:
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    r = ReferenceStore()
    step = r.load(str(tmp_path))
    assert step == snapshots(str(tmp_path))[0][0] and len(r) == 20_000  # newest complete snapshot, resumed
    assert r.peek("k/1").rounds == 3  # the open epoch's observations came back too
    r.end_epoch()
    assert r.peek("k/1").rounds == 2


def test_refs_cli_show_and_export(tmp_path, capsys):
    s = _filled()
    s.end_epoch()
    s.save(str(tmp_path / "refs"), 7)
    assert cli_main(["refs", "show", "--path", str(tmp_path / "refs"), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert '"snapshot_step": 7' in out and '"prompt_key": "ds/0", "ref_rounds": 2, "ref_searches": 4' in out
    assert cli_main(["refs", "export", "--path", str(tmp_path / "refs"), "--out", str(tmp_path / "r.jsonl")]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "r.jsonl")]
    assert rows == [{"prompt_key": "ds/0", "ref_rounds": 2, "ref_searches": 4},
                    {"prompt_key": "ds/1", "ref_rounds": 4, "ref_searches": 4}]
    snap = snapshots(str(tmp_path / "refs"))[0][1]
    assert cli_main(["refs", "export", "--path", snap, "--out", str(tmp_path / "r.csv")]) == 0
    assert list(csv.DictReader(open(tmp_path / "r.csv")))[1] == {"prompt_key": "ds/1", "ref_rounds": "4",
                                                                 "ref_searches": "4"}
    assert cli_main(["refs", "export", "--path", snap, "--out", str(tmp_path / "r.txt")]) == 2
    with pytest.raises(SystemExit, match="no step_<N>.npz"):
        cli_main(["refs", "show", "--path", str(tmp_path / "empty")])
    with open(snap, "r+b") as f:  # one named file that does not read: the error says which and why
        f.truncate(40)
    with pytest.raises(SystemExit, match="is not a readable TRACE snapshot"):
        cli_main(["refs", "show", "--path", snap])


def test_growth_beyond_initial_capacity_keeps_values():
    s = ReferenceStore()
    n = 5000
    s.load_initial((f"k/{i}", i % 9, i % 11) for i in range(n))
    r = np.array([row["ref_rounds"] for row in s.rows()])
    assert len(s) == n and (r == np.arange(n) % 9).all()
