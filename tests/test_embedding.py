"""A Reranker leaves its host process alone: malloc, the environment; tuning is an explicit opt-in.

Each check runs in a fresh interpreter, because what is checked is process-wide state.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from fastrerank._engine import cpu_isa
from fastrerank._scoped_env import ScopedVariable
from fastrerank._tuning import GLIBC_ENV, recommended_environment

from .reliability_helpers import run_python


def _glibc_version() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") if sys.platform.startswith("linux") else None
    except (ValueError, OSError):  # musl has no such name
        return None


GLIBC = _glibc_version()
ON_GLIBC = GLIBC is not None
AVX512_HERE = cpu_isa.AVX512_FLAGS <= cpu_isa.cpu_flags()
# The variables that would change what is measured; the probes start without them.
FOREIGN = ("CT2_FORCE_CPU_ISA", "LD_PRELOAD", *GLIBC_ENV, "GLIBC_TUNABLES")

HOST_PROBE = """
import ctypes, json, os, sys, threading
before = dict(os.environ)
import fastrerank
tuning = fastrerank.tune_process() if sys.argv[2] == "tune" else None
reranker = fastrerank.Reranker(sys.argv[1], device="cpu")
reranker.score("apple", ["apple pie", "car engine"])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def allocate():  # a thread created after the Reranker: its first malloc picks an arena
    libc.free(libc.malloc(64))

thread = threading.Thread(target=allocate)
thread.start()
thread.join()
sys.stderr.flush()
libc.malloc_stats()  # one "Arena N:" block per malloc arena, on stderr
added = sorted(set(os.environ) - set(before))
changed = sorted(key for key in before if os.environ.get(key) != before[key])
print(json.dumps({"added": added, "changed": changed, "tuning": tuning and [tuning.malloc, tuning.cpu_isa]}))
"""


def _host_probe(folder: str, mode: str) -> tuple[dict, int]:  # type: ignore[type-arg]
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    done = subprocess.run([sys.executable, "-c", HOST_PROBE, folder, mode], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    arenas = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    return json.loads(done.stdout.splitlines()[-1]), arenas


@pytest.mark.skipif(not ON_GLIBC, reason="malloc arenas are glibc's")
def test_a_reranker_leaves_malloc_and_the_environment_alone(converted) -> None:  # type: ignore[no-untyped-def]
    report, arenas = _host_probe(str(converted("tiny", "int8")), "library")
    assert report == {"added": [], "changed": [], "tuning": None}
    assert arenas >= 2  # the new thread got an arena of its own: M_ARENA_MAX was not set to 1


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_tune_process_is_the_explicit_opt_in(converted) -> None:  # type: ignore[no-untyped-def]
    report, arenas = _host_probe(str(converted("tiny", "int8")), "tune")
    isa = "AVX512" if AVX512_HERE else None
    assert report == {"added": ["CT2_FORCE_CPU_ISA"] if isa else [], "changed": [], "tuning": [True, isa]}
    assert arenas == 1  # every thread shares the one arena: what tune_process documents


THRESHOLD_PROBE = """
import ctypes, json, os, sys
names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in names]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[2] == "load":
    import fastrerank
    fastrerank.Reranker(sys.argv[1], device="cpu").score("apple", ["apple pie", "car engine"])
elif sys.argv[2] == "raise":
    from fastrerank._engine.malloc_thresholds import raise_dynamic_thresholds
    assert raise_dynamic_thresholds() and not raise_dynamic_thresholds()  # once per process
page = os.sysconf("SC_PAGESIZE")
before = libc.mallinfo2().hblks
block = libc.malloc((32 << 20) - 2 * page)  # just under the ceiling: far above what a tiny model frees
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"mapped": mapped}))
"""


def _mapped_after(folder: str, mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    done = subprocess.run([sys.executable, "-c", THRESHOLD_PROBE, folder, mode], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.splitlines()[-1])["mapped"])


@pytest.mark.skipif(GLIBC is None or GLIBC < "glibc 2.33", reason="glibc's mallinfo2")
def test_a_cpu_model_load_moves_glibcs_dynamic_thresholds_to_their_ceiling(converted) -> None:  # type: ignore[no-untyped-def]
    """CTranslate2's per-batch buffers stay in the heap between batches instead of being mapped
    and faulted in again for every batch; no malloc setting changes (the arena test above)."""
    folder = str(converted("tiny", "int8"))
    assert _mapped_after(folder, "bare") == 1  # a fresh process maps a block of nearly 32 MiB on its own
    assert _mapped_after(folder, "raise") == 0  # after one ceiling-sized free it comes from the heap
    assert _mapped_after(folder, "load") == 0  # and a CPU load does that free


WAIT_PROBE = """
import sys
import fastrerank
fastrerank.Reranker(sys.argv[1], device="cpu", threads=2).score("apple", ["apple pie", "car engine"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux wheel bundles GNU libgomp")
@pytest.mark.parametrize(("users_choice", "spin_count"), [({}, "0"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "30000000000"),
                                                          ({"GOMP_SPINCOUNT": "1000"}, "1000")])
def test_ctranslate2s_openmp_threads_sleep_when_idle_unless_the_user_chose(users_choice: dict[str, str], spin_count: str,
                                                                          converted) -> None:  # type: ignore[no-untyped-def]
    """CTranslate2's own libgomp is loaded with OMP_WAIT_POLICY=PASSIVE (spin count 0 instead of
    libgomp's 300000): idle team threads do not take the cores of a busy host. The user's
    variables win; the environment itself is checked unchanged by the host probe above."""
    env = {key: value for key, value in os.environ.items() if key not in (*FOREIGN, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", WAIT_PROBE, str(converted("tiny", "int8"))], capture_output=True,
                          text=True, env={**env, **users_choice, "OMP_DISPLAY_ENV": "VERBOSE"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr) == [spin_count]  # one libgomp: CTranslate2's


ISA_PROBE = """
import logging, os, sys
import ctranslate2
ctranslate2.set_log_level(logging.INFO)
from fastrerank import Reranker
Reranker(sys.argv[1], device="cpu", threads=1)
print("after load:", os.environ.get("CT2_FORCE_CPU_ISA"))
"""


@pytest.mark.parametrize("users_choice", [None, "AVX2"])
def test_avx512_is_set_only_while_the_first_model_loads(users_choice: str | None, converted) -> None:  # type: ignore[no-untyped-def]
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    if users_choice:
        env["CT2_FORCE_CPU_ISA"] = users_choice
    done = subprocess.run([sys.executable, "-c", ISA_PROBE, str(converted("tiny", "int8"))], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"after load: {users_choice}"  # the environment as it was
    selected = [line.split("Selected ISA:")[1].strip() for line in done.stderr.splitlines() if "Selected ISA:" in line]
    if users_choice or AVX512_HERE:
        assert selected == [users_choice or "AVX512"]


AVX512_FLAGS = frozenset({"avx2", *cpu_isa.AVX512_FLAGS})


def test_the_isa_scope_restores_the_environment_and_acts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_isa, "_chosen", False)
    environ: dict[str, str] = {"HOME": "/root"}
    with pytest.raises(RuntimeError, match="load failed"), cpu_isa.cpu_isa_for_load(environ, flags=AVX512_FLAGS):
        assert environ == {"HOME": "/root", "CT2_FORCE_CPU_ISA": "AVX512"}
        raise RuntimeError("load failed")
    assert environ == {"HOME": "/root"} and cpu_isa._chosen is False  # a failed load chose nothing
    with cpu_isa.cpu_isa_for_load(environ, flags=AVX512_FLAGS):
        assert environ["CT2_FORCE_CPU_ISA"] == "AVX512"
    assert environ == {"HOME": "/root"} and cpu_isa._chosen is True
    with cpu_isa.cpu_isa_for_load(environ, flags=AVX512_FLAGS):  # CTranslate2 has chosen: nothing to set
        assert environ == {"HOME": "/root"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_scoped_variable_is_removed_in_a_child_forked_inside_its_window() -> None:
    """What CT2_FORCE_CPU_ISA and OMP_WAIT_POLICY rely on: the thread that would remove the
    variable does not exist in the child, so the child's fork handler does."""
    variable = ScopedVariable("FASTRERANK_TEST_SCOPED")
    environ: dict[str, str] = {"HOME": "/root"}
    with variable.set_to(None, environ):  # None sets nothing
        assert environ == {"HOME": "/root"}
    with variable.set_to("on", environ):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it sees and leave at once
            os.write(write, json.dumps(environ).encode())
            os._exit(0)
        os.close(write)
        seen_by_child = json.loads(os.read(read, 4096))
        os.close(read)
        os.waitpid(pid, 0)
        assert environ == {"HOME": "/root", "FASTRERANK_TEST_SCOPED": "on"}  # the parent's window goes on
    assert seen_by_child == {"HOME": "/root"}
    assert environ == {"HOME": "/root"}


def test_the_bundled_libgomp_is_found_only_in_the_wheels_own_folder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Where CTranslate2 is not the Linux wheel (no ``ctranslate2.libs/``, or an unclear one),
    nothing is loaded early and no variable is set: it is imported as it is."""
    import importlib.machinery

    from fastrerank import _ctranslate2

    package = tmp_path / "ctranslate2"
    package.mkdir()
    spec = importlib.machinery.ModuleSpec("ctranslate2", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr(_ctranslate2.importlib.util, "find_spec", lambda name: spec)
    assert _ctranslate2.bundled_libgomp() is None  # no ctranslate2.libs folder
    libs = tmp_path / "ctranslate2.libs"
    libs.mkdir()
    (libs / "libgomp-e985bcbb.so.1.0.0").write_bytes(b"")
    assert _ctranslate2.bundled_libgomp() == libs / "libgomp-e985bcbb.so.1.0.0"
    (libs / "libgomp-0123abcd.so.1.0.0").write_bytes(b"")
    assert _ctranslate2.bundled_libgomp() is None  # two candidates: not a wheel's layout
    monkeypatch.setattr(_ctranslate2.importlib.util, "find_spec", lambda name: None)
    assert _ctranslate2.bundled_libgomp() is None  # not installed


@pytest.mark.parametrize(("environ", "flags", "expected"), [
    ({}, AVX512_FLAGS, "AVX512"),
    ({"CT2_FORCE_CPU_ISA": "AVX2"}, AVX512_FLAGS, None),  # the user's choice wins
    ({}, frozenset({"avx2", "avx512f"}), None),  # AVX-512F alone: CTranslate2's kernels need BW/VL/DQ/CD too
])
def test_preferred_cpu_isa(environ: dict[str, str], flags: frozenset[str], expected: str | None) -> None:
    assert cpu_isa.preferred_cpu_isa(environ, flags) == expected


def test_recommended_environment_keeps_the_users_values() -> None:
    env = recommended_environment({"MALLOC_ARENA_MAX": "4", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"},
                                  flags=AVX512_FLAGS)
    assert "MALLOC_ARENA_MAX" not in env
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1"
    assert env["MALLOC_MMAP_THRESHOLD_"] == "33554432" and env["CT2_FORCE_CPU_ISA"] == "AVX512"
    assert "CT2_FORCE_CPU_ISA" not in recommended_environment({}, flags=frozenset())


def test_fastrerank_env_prints_the_export_lines_of_the_environment_it_was_started_in() -> None:
    """``fastrerank env`` (was ``python -m fastrerank.tuning``) reports the environment as it is: it does
    not tune its own process first, which would set CT2_FORCE_CPU_ISA and leave that line out."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    env.update(MALLOC_ARENA_MAX="4", GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    done = subprocess.run([sys.executable, "-m", "fastrerank", "env"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = recommended_environment(env)
    assert done.stdout.splitlines() == [f"export {name}={shlex.quote(value)}" for name, value in expected.items()]
    assert "MALLOC_ARENA_MAX" not in expected and ("CT2_FORCE_CPU_ISA" in expected) == AVX512_HERE
    assert "export GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1" in done.stdout.splitlines()
    listed = subprocess.run([sys.executable, "-m", "fastrerank", "--help"], capture_output=True, text=True, timeout=60)
    assert "env" in listed.stdout and "export lines" in listed.stdout


def test_the_command_line_tunes_its_own_process_without_reexecuting(converted) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys\n"
            "print('start', file=sys.stderr, flush=True)\n"
            "import fastrerank._tuning as tuning\n"
            "real = tuning.tune_process\n"
            "calls = []\n"
            "tuning.tune_process = lambda: calls.append(real()) or calls[-1]\n"
            "from fastrerank._cli import main\n"
            "status = main()\n"
            "print('tuned', len(calls), file=sys.stderr)\n"
            "sys.exit(status)\n")
    done = run_python(code, "rank", "--model", str(converted("tiny")), "apple", "apple pie")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line in ("start", "tuned 1")] == ["start", "tuned 1"]
    assert json.loads(done.stdout)["results"][0]["index"] == 0

