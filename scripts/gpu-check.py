#!/usr/bin/env python3
"""The device check of the GPU backends (`npm run gpu:check`, or `python3 scripts/gpu-check.py`).

On a machine with an NVIDIA or AMD GPU, in one run of a few minutes, with only the GPU toolkit
(nvcc, or hipcc from ROCm) and python3 with torch; Node.js is not needed:
  1. builds the backend for the card found (sources and flags from native/gpu/build.json) into
     build-gpu/check-<arch>/, with the compiler's resource figures (registers, spills) per kernel;
  2. runs the native GPU tests (test_gpu: exact block sums, outputs within lowbit.h's bound, all
     schemes, paths and low-rank modes);
  3. NVIDIA: runs compute-sanitizer (memcheck, racecheck, synccheck) on small shapes
     (SVDQ_GPU_TEST_SMALL=1), when it is installed, each shortened to keep within --budget (540 s);
  4. benchmarks the fused w4a4 and mxfp4 layers (rank 32 and rank 0) against a bf16 torch.matmul
     (cuBLAS / hipBLASLt) at M = 1, 16, 256, 4096 and (K, N) = (3072, 3072), (3072, 12288);
  5. writes everything to <out>/gpu-check.json and gpu-check.md (--out, else $OUT, else
     build-gpu/gpu-check) and prints the targets: fused ≥ 1.5× bf16 at M = 4096, low-rank overhead
     (fused rank 32 over rank 0) ≤ 3%.
Exit status: 0 when the build, the tests and the sanitizers pass (the speed targets are reported,
not enforced); 0 with "no GPU: ..." when there is no GPU.

    python3 scripts/gpu-check.py [--out DIR] [--arch sm_90a|gfx942] [--build-only] [--quick]
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = json.load(open(os.path.join(ROOT, "native/gpu/build.json")))
MS = [1, 16, 256, 4096]
KN = [(3072, 3072), (3072, 12288)]


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout, env=None, cwd=ROOT):
    """(status, combined output); status 124 on timeout."""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
        out, code = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), 124
    except FileNotFoundError as e:
        out, code = str(e), 127
    return code, out, time.time() - t0


def detect(forced_arch):
    """(platform, arch, device name) of device 0, or (None, reason, None)."""
    try:
        import torch
    except ImportError as e:
        torch = None
        why = f"no torch ({e})"
    if torch is not None:
        if not torch.cuda.is_available():
            return None, "torch.cuda.is_available() is False", None
        name = torch.cuda.get_device_name(0)
        if getattr(torch.version, "hip", None):
            arch = torch.cuda.get_device_properties(0).gcnArchName.split(":")[0]
            return "hip", forced_arch or arch, name
        major, minor = torch.cuda.get_device_capability(0)
        # sm_90 gets the arch-specific target (wgmma/setmaxnreg-capable code may use it).
        arch = f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
        return "cuda", forced_arch or arch, name
    if forced_arch:
        return ("cuda" if forced_arch.startswith("sm_") else "hip"), forced_arch, "unknown"
    return None, why, None


def build(platform, arch, out_dir):
    """Compiles the library, test_gpu and bench_gpu; returns (ok, resource lines, seconds)."""
    t0 = time.time()
    obj = os.path.join(out_dir, "obj")
    os.makedirs(obj, exist_ok=True)
    inc = sum((["-I", os.path.join(ROOT, d)] for d in CFG["include"]), [])
    if platform == "cuda":
        num = arch[3:]
        base = re.sub(r"[a-z]$", "", num)
        archf = ["-gencode", f"arch=compute_{num},code=sm_{num}", "-gencode", f"arch=compute_{base},code=compute_{base}"]
        built = f"{arch},compute_{base}"
        cc = os.environ.get("NVCC", "nvcc")
        dev = CFG["cuda_flags"] + archf + ["-Xptxas", "-v"]
        link = ["--cudart=static"] + archf
    else:
        archf = [f"--offload-arch={arch}"]
        built = arch
        cc = os.environ.get("HIPCC", "hipcc")
        dev = CFG["hip_flags"] + archf + ["-Rpass-analysis=kernel-resource-usage"]
        link = archf
    cxx = os.environ.get("CXX", "g++")
    define = [f'-DSVDQ_BUILT_ARCHS="{built}"']
    o = lambda src: os.path.join(obj, os.path.basename(src).rsplit(".", 1)[0] + ".o")
    steps = [([cc] + dev + inc + define + ["-c", os.path.join(ROOT, s), "-o", o(s)], s)
             for s in CFG["library_device"] + [CFG["test_device"], CFG["bench_device"]]]
    steps += [([cxx] + CFG["host_flags"] + inc + ["-c", os.path.join(ROOT, s), "-o", o(s)], s)
              for s in CFG["library_host"] + CFG["test_host"]]
    outputs = {}
    ok = True
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as ex:
        for (cmd, src), (code, text, secs) in zip(steps, ex.map(lambda st: run(st[0], 600), steps)):
            log(f"  compile {src} ({secs:.1f} s){'' if code == 0 else ' FAILED'}")
            outputs[src] = text
            if code != 0:
                ok = False
                log(text[-4000:])
    if not ok:
        return False, [], time.time() - t0
    lib_objs = [o(s) for s in CFG["library_device"] + CFG["library_host"]]
    targets = [
        (["-shared"] + (["-Xcompiler", "-fPIC"] if platform == "cuda" else ["-fPIC"]) + link + lib_objs + ["-o", os.path.join(out_dir, f"libsvdquant_{platform}.so")]),
        (link + [o(CFG["test_device"])] + [o(s) for s in CFG["test_host"]] + lib_objs + ["-o", os.path.join(out_dir, "test_gpu")]),
        (link + [o(CFG["bench_device"])] + lib_objs + ["-o", os.path.join(out_dir, "bench_gpu")]),
    ]
    for t in targets:
        code, text, _ = run([cc] + t, 300)
        if code != 0:
            log(f"  link failed: {text[-3000:]}")
            return False, [], time.time() - t0
    res = []
    for src in CFG["library_device"]:
        res += resource_lines(outputs[src], platform)
    return True, res, time.time() - t0


def resource_lines(text, platform):
    """One line per kernel: registers and spills (see scripts/gpu-resources.mjs for the full report)."""
    lines = []
    if platform == "cuda":
        cur = None
        for l in text.splitlines():
            m = re.search(r"Compiling entry function '([^']+)' for '([^']+)'", l)
            if m:
                cur = f"{demangle(m.group(1))} ({m.group(2)})"
                spill = cur
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", l)
            if m and cur:
                spill = cur + f": stack {m.group(1)} B, spill stores {m.group(2)} B, loads {m.group(3)} B"
            m = re.search(r"Used (\d+) registers", l)
            if m and cur:
                lines.append(f"{spill}, {m.group(1)} registers")
                cur = None
    else:
        for l in text.splitlines():
            m = re.search(r"remark: .*?(Function Name|VGPRs|AGPRs|ScratchSize \[bytes/lane\]|VGPRs Spill): (\S+)", l)
            if m:
                if m.group(1) == "Function Name":
                    lines.append(demangle(m.group(2)))
                elif lines:
                    lines[-1] += f", {m.group(1)} {m.group(2)}"
    return lines


def demangle(name):
    """'gemm_kernel<0, 1>' from the mangled name (c++filt when installed)."""
    try:
        full = subprocess.run(["c++filt", name], stdout=subprocess.PIPE, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return name
    return re.sub(r"^.*::", "", re.sub(r"\(.*$", "", full.replace("(anonymous namespace)::", "")))


def counts(text):
    m = re.findall(r"^(\d+) passed, (\d+) failed", text, re.M)
    return (int(m[-1][0]), int(m[-1][1])) if m else None


def json_lines(text):
    rows = []
    for l in text.splitlines():
        l = l.strip()
        if l.startswith("{") and l.endswith("}"):
            try:
                rows.append(json.loads(l))
            except ValueError:
                pass
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "build-gpu", "gpu-check"))
    ap.add_argument("--arch", help="build for this target instead of device 0's (sm_90a, gfx942, ...)")
    ap.add_argument("--build-only", action="store_true", help="build (and report resources) only")
    ap.add_argument("--quick", action="store_true", help="M = 1, 4096 and (3072, 3072) only")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole check (sanitizer runs shrink to fit)")
    a = ap.parse_args()
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    platform, arch, name = detect(a.arch)
    if platform is None:
        log(f"no GPU: {arch} — device check skipped")
        return 0
    report.update({"platform": platform, "arch": arch, "device": name})
    if platform == "hip":
        os.environ.setdefault("HIP_PLATFORM", "amd")
    log(f"== gpu-check: {name} ({platform}, {arch})")
    build_dir = os.path.join(ROOT, "build-gpu", f"check-{arch}")
    os.makedirs(build_dir, exist_ok=True)
    log("== build")
    ok, res, secs = build(platform, arch, build_dir)
    report["steps"]["build"] = {"ok": ok, "seconds": round(secs, 1), "resources": res}
    for l in res:
        log(f"  {l}")
    failures = 0 if ok else 1
    if ok and not a.build_only:
        env = dict(os.environ)
        log("== native GPU tests")
        code, text, secs = run([os.path.join(build_dir, "test_gpu")], 400, env)
        c = counts(text)
        log("\n".join(l for l in text.splitlines() if l.startswith(("FAIL", "device", "svdquant", "no GPU"))) or text[-2000:])
        log(f"  {c[0] if c else '?'} passed, {c[1] if c else '?'} failed ({secs:.1f} s)")
        tests_ok = code == 0 and c is not None and c[1] == 0
        report["steps"]["test_gpu"] = {"ok": tests_ok, "passed": c[0] if c else None, "failed": c[1] if c else None, "seconds": round(secs, 1)}
        failures += 0 if tests_ok else 1

        sanitizer = shutil.which("compute-sanitizer") if platform == "cuda" else None
        report["steps"]["sanitizer"] = {}
        if sanitizer:
            small = dict(env, SVDQ_GPU_TEST_SMALL="1")
            for tool in ["memcheck", "racecheck", "synccheck"]:
                # Keep about 150 s for the benchmark within the budget.
                limit = min(180, a.budget - (time.time() - t_start) - 150)
                if limit < 30:
                    log(f"== compute-sanitizer --tool {tool}: skipped, the budget of {a.budget:.0f} s is spent")
                    report["steps"]["sanitizer"][tool] = {"ok": None, "skipped": "budget"}
                    continue
                log(f"== compute-sanitizer --tool {tool} (small shapes, at most {limit:.0f} s)")
                code, text, secs = run([sanitizer, "--tool", tool, "--error-exitcode", "99", os.path.join(build_dir, "test_gpu")], limit, small)
                summary = [l for l in text.splitlines() if "ERROR SUMMARY" in l or "RACECHECK SUMMARY" in l]
                c = counts(text)
                good = code == 0 and c is not None and c[1] == 0
                log(f"  {'ok' if good else 'FAILED'} ({secs:.1f} s): {'; '.join(summary) or text[-1500:]}")
                report["steps"]["sanitizer"][tool] = {"ok": good, "status": code, "summary": summary, "seconds": round(secs, 1)}
                failures += 0 if good else 1
        else:
            log("== compute-sanitizer: not available here (" + ("AMD" if platform == "hip" else "not on PATH") + ")")

        ms = [1, 4096] if a.quick else MS
        kn = [(3072, 3072)] if a.quick else KN
        msa, kna = ",".join(map(str, ms)), ",".join(f"{k}x{n}" for k, n in kn)
        log("== benchmark: fused w4a4 and mxfp4 (rank 32 and 0) against bf16 torch.matmul")
        code, text, secs = run([os.path.join(build_dir, "bench_gpu"), "--schemes=w4a4,mxfp4", "--rank=32", "--iters=9",
                                "--warmup=3", f"--ms={msa}", f"--kn={kna}"], 300, env)
        ours = json_lines(text) if code == 0 else []
        if code != 0:
            log(f"  bench_gpu failed ({code}): {text[-2000:]}")
            failures += 1
        code, text, secs2 = run([sys.executable, os.path.join(ROOT, "bench/gpu/torch_bf16.py"), "--iters", "9", "--warmup", "3",
                                 "--ms", msa, "--kn", kna], 300, env)
        base = json_lines(text)
        if not base:
            log(f"  torch baseline failed: {text[-2000:]}")
        report["steps"]["bench"] = {"seconds": round(secs + secs2, 1), "svdquant": ours, "bf16": base}
        report["targets"] = targets(ours, base)
    report["seconds"] = round(time.time() - t_start, 1)
    write_report(a.out, report)
    log(f"== gpu-check done in {report['seconds']} s: {'ok' if failures == 0 else f'{failures} step(s) FAILED'}; figures in {a.out}")
    return 0 if failures == 0 else 1


def targets(ours, base):
    """Speed-ups of fused rank-32 layers over bf16, and the low-rank overhead, per shape."""
    bf = {(r["m"], r["k"], r["n"]): r["median_ms"] for r in base}
    rows = []
    for r in ours:
        if r["mode"] != "fused" or r["rank"] == 0:
            continue
        key = (r["m"], r["k"], r["n"])
        r0 = next((x for x in ours if x["scheme"] == r["scheme"] and (x["m"], x["k"], x["n"]) == key and x["rank"] == 0), None)
        speedup = bf[key] / r["median_ms"] if key in bf and r["median_ms"] > 0 else None
        overhead = r["median_ms"] / r0["median_ms"] - 1 if r0 and r0["median_ms"] > 0 else None
        rows.append({"scheme": r["scheme"], "m": r["m"], "k": r["k"], "n": r["n"], "ms": r["median_ms"], "bf16_ms": bf.get(key),
                     "speedup_vs_bf16": speedup, "lowrank_overhead": overhead,
                     "speedup_target_met": (speedup is not None and speedup >= 1.5) if r["m"] == 4096 else None,
                     "overhead_target_met": overhead is not None and overhead <= 0.03})
    return rows


def write_report(out, report):
    with open(os.path.join(out, "gpu-check.json"), "w") as f:
        json.dump(report, f, indent=2)
    md = [f"# svdquant gpu-check — {report.get('device')} ({report.get('platform')}, {report.get('arch')})", "",
          f"started {report['started']}, {report['seconds']} s", ""]
    for step, v in report["steps"].items():
        md.append(f"- {step}: {json.dumps({k: x for k, x in v.items() if k not in ('resources', 'svdquant', 'bf16')})}")
    if report.get("targets"):
        md += ["", "| scheme | M | K | N | fused r=32 ms | bf16 ms | speed-up | low-rank overhead |", "|---|---|---|---|---|---|---|---|"]
        for t in report["targets"]:
            sp = f"{t['speedup_vs_bf16']:.2f}×" if t["speedup_vs_bf16"] else "?"
            ov = f"{100 * t['lowrank_overhead']:.1f}%" if t["lowrank_overhead"] is not None else "?"
            md.append(f"| {t['scheme']} | {t['m']} | {t['k']} | {t['n']} | {t['ms']:.4f} | {t['bf16_ms'] or '?'} | {sp} | {ov} |")
        md += ["", "Targets: fused ≥ 1.5× bf16 at M = 4096; low-rank overhead ≤ 3%."]
    with open(os.path.join(out, "gpu-check.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md[4:]))


if __name__ == "__main__":
    sys.exit(main())
