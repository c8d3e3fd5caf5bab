#!/usr/bin/env python3
"""A feedback database with N library studies for timing the worklist (`radbridge library list`,
the app's Library panel): each study has one run with 33 scored findings (~10 % flagged), a
third of them one verdict. The schema comes from Radbridge itself (it creates and migrates
the file first); rows are inserted with Python's sqlite3.

    python tests/reference/make_library_db.py --studies 10000 --db /tmp/lib10k.sqlite3 \
        [--radbridge target/release/radbridge]
    /usr/bin/time -f "%e s %M KB" target/release/radbridge library list --db /tmp/lib10k.sqlite3 --json >/dev/null
"""
import argparse
import json
import os
import random
import sqlite3
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--db", required=True)
    ap.add_argument("--radbridge", default="target/release/radbridge")
    a = ap.parse_args()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(a.db + suffix):
            os.remove(a.db + suffix)
    subprocess.run([a.radbridge, "library", "list", "--db", a.db], check=True, capture_output=True)
    c = sqlite3.connect(a.db)
    random.seed(1)
    now = "2026-12-07T00:00:00.000Z"
    labels = [f"L{i}" for i in range(33)]
    diag = json.dumps({"model": {"name": "m", "weights_sha256": "a" * 64}, "findings": [],
                       "source": {"modality": "CT", "study": {"date": "20240101", "description": "CHEST"}}})
    for i in range(1, a.studies + 1):
        c.execute("INSERT INTO studies (id, study_key, path, created_at) VALUES (?,?,?,?)", (i, f"k{i}", f"/data/s{i}", now))
        c.execute("INSERT INTO runs (id, study_id, study_path, created_at, model_name, model_checksum, app_version, diagnosis) "
                  "VALUES (?,?,?,?,?,?,?,?)", (i, i, f"/data/s{i}", now, "m", "a" * 64, "0.1", diag))
        for j, label in enumerate(labels):
            c.execute("INSERT INTO run_findings (run_id, ordinal, label, score, threshold, flagged) VALUES (?,?,?,?,?,?)",
                      (i, j, label, random.random(), 0.5, int(random.random() < 0.1)))
        c.execute("INSERT INTO study_info (study_id, origin, modality, study_date, description, updated_at) VALUES (?,?,?,?,?,?)",
                  (i, "batch", "CT", "20240101", "CHEST", now))
        if i % 3 == 0:
            c.execute("INSERT INTO review_events (run_id, label, action, created_at) VALUES (?,?,?,?)", (i, "L1", "confirm", now))
    c.commit()


if __name__ == "__main__":
    main()
