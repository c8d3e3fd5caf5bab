#!/usr/bin/env python3
"""Retrieve speed against curl, from a real local Orthanc, in the same run.

Starts Orthanc (Debian's orthanc + orthanc-dicomweb) on free loopback ports with a temporary
storage folder, uploads two series through its REST API:
  - the shared 20-instance JPEG 2000 CT series (tests/data/totalsegmentator/example_ct_dicom),
    given Study/Series UIDs in copies (the originals have none), and
  - a 200-instance uncompressed CT series made from pydicom's 693_UNCR.dcm (512x512, 16-bit):
    200 copies with their own SOP Instance UIDs and positions,
then times, alternately and --repeats times each, `curl` fetching the series' WADO-RS multipart
(to a single file, as it arrives) and `radbridge pacs retrieve` (QIDO listing + WADO-RS, each
instance written to its own file, the library record). Prints medians and the ratio
radbridge / curl (the issue's goal: <= 1.2).

    target/testvenv/bin/python tests/reference/bench_pacs.py --radbridge target/release/radbridge
"""
import argparse
import base64
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import pydicom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER, PASSWORD = "radbridge", "bench-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(port, path, data=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--radbridge", default=os.path.join(ROOT, "target/release/radbridge"))
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-pacs-")
    http, dicom = free_port(), free_port()
    cfg = {
        "Name": "BenchPACS", "StorageDirectory": f"{tmp}/db", "IndexDirectory": f"{tmp}/db",
        "HttpPort": http, "DicomPort": dicom, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    with open(f"{tmp}/orthanc.json", "w") as f:
        json.dump(cfg, f)
    log = open(f"{tmp}/orthanc.log", "w")
    orthanc = subprocess.Popen(["Orthanc", f"{tmp}/orthanc.json"], stdout=log, stderr=log, env={**os.environ, "LC_ALL": "C.UTF-8"})
    try:
        for _ in range(600):
            try:
                rest(http, "/system")
                break
            except Exception:
                time.sleep(0.1)
        series = {}
        # The J2K series, given UIDs.
        os.makedirs(f"{tmp}/src/j2k")
        for p in sorted(glob.glob(f"{ROOT}/tests/data/totalsegmentator/example_ct_dicom/*")):
            d = pydicom.dcmread(p)
            d.StudyInstanceUID, d.SeriesInstanceUID = "2.25.9001", "2.25.9002"
            d.SOPInstanceUID = d.file_meta.MediaStorageSOPInstanceUID
            d.SOPClassUID = d.file_meta.MediaStorageSOPClassUID
            d.save_as(f"{tmp}/src/j2k/{d.SOPInstanceUID}.dcm")
        series["j2k_20"] = ("2.25.9001", "2.25.9002", f"{tmp}/src/j2k")
        # 200 uncompressed instances.
        os.makedirs(f"{tmp}/src/unc")
        base = pydicom.dcmread(f"{ROOT}/tests/data/pydicom-data/693_UNCR.dcm")
        for i in range(200):
            base.StudyInstanceUID, base.SeriesInstanceUID = "2.25.9101", "2.25.9102"
            uid = f"2.25.9103{i:04d}"
            base.SOPInstanceUID = uid
            base.file_meta.MediaStorageSOPInstanceUID = uid
            base.InstanceNumber = i + 1
            base.ImagePositionPatient = [0.0, 0.0, float(i)]
            base.save_as(f"{tmp}/src/unc/{uid}.dcm")
        series["uncompressed_200"] = ("2.25.9101", "2.25.9102", f"{tmp}/src/unc")
        for _, _, d in series.values():
            for p in sorted(glob.glob(f"{d}/*.dcm")):
                with open(p, "rb") as f:
                    assert rest(http, "/instances", f.read())["Status"] == "Success"
        env = {**os.environ, "RB_BENCH_PW": PASSWORD, "RADBRIDGE_DATA_DIR": f"{tmp}/data"}
        web = f"http://127.0.0.1:{http}/dicom-web"
        results = {}
        for name, (study, ser, src) in series.items():
            size = sum(os.path.getsize(p) for p in glob.glob(f"{src}/*.dcm"))
            url = f"{web}/studies/{study}/series/{ser}"
            t_curl, t_rb, t_null = [], [], []
            for r in range(a.repeats):
                out = f"{tmp}/curl.bin"
                t0 = time.perf_counter()
                subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-H",
                                'Accept: multipart/related; type="application/dicom"; transfer-syntax=*', url, "-o", out], check=True)
                t_curl.append(time.perf_counter() - t0)
                got = os.path.getsize(out)
                # The transfer alone (curl writing nowhere): the floor under both.
                t0 = time.perf_counter()
                subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-H",
                                'Accept: multipart/related; type="application/dicom"; transfer-syntax=*', url, "-o", "/dev/null"], check=True)
                t_null.append(time.perf_counter() - t0)
                dest = f"{tmp}/rb-{name}-{r}"
                t0 = time.perf_counter()
                subprocess.run([a.radbridge, "pacs", "retrieve", "--server", web, "--user", USER, "--password-env", "RB_BENCH_PW",
                                "--study", study, "--series", ser, "--output", dest], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                t_rb.append(time.perf_counter() - t0)
                n = len(glob.glob(f"{dest}/{ser}/*.dcm"))
                assert n == len(glob.glob(f"{src}/*.dcm")), (name, n)
                shutil.rmtree(dest)
            mc, mr, mn = statistics.median(t_curl), statistics.median(t_rb), statistics.median(t_null)
            results[name] = {"instances": n, "bytes": size, "multipart_bytes": got, "curl_s": round(mc, 4),
                             "curl_to_dev_null_s": round(mn, 4), "radbridge_s": round(mr, 4), "ratio": round(mr / mc, 3)}
            print(f"{name}: {n} instances, {size / 1e6:.1f} MB: curl to a file {mc * 1000:.0f} ms (to /dev/null {mn * 1000:.0f} ms), "
                  f"radbridge {mr * 1000:.0f} ms, ratio {mr / mc:.2f} (median of {a.repeats})")
        print(json.dumps(results, indent=1))
    finally:
        orthanc.terminate()
        orthanc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
