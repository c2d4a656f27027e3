"""``fastrerank.allocator``: which allocator the command line re-executes under, and when it does not."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastrerank import allocator
from fastrerank.allocator import (
    ENV_CHOICE,
    ENV_MARKER,
    GLIBC_ENV,
    find_mimalloc,
    plan_allocator,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def no_mimalloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: None)


@pytest.fixture
def fake_mimalloc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    library = tmp_path / "libmimalloc.so.3"
    library.write_bytes(b"")
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: library)
    return library


@pytest.mark.parametrize("environ", [
    {ENV_MARKER: "glibc"},  # already re-executed
    {ENV_MARKER: "mimalloc", ENV_CHOICE: "mimalloc"},
    {ENV_CHOICE: "system"},  # opt-out
    {ENV_CHOICE: " System "},
    {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},  # the user's own preload is left alone
])
def test_leaves_the_process_alone(environ: dict[str, str], fake_mimalloc: Path) -> None:
    assert plan_allocator(environ, platform="linux") is None


def test_only_on_linux(fake_mimalloc: Path) -> None:
    assert plan_allocator({}, platform="darwin") is None
    assert plan_allocator({}, platform="win32") is None


def test_mimalloc_when_chosen_and_installed(fake_mimalloc: Path) -> None:
    plan = plan_allocator({ENV_CHOICE: "mimalloc"}, platform="linux", flags=frozenset())
    assert plan is not None and plan.name == "mimalloc"
    assert plan.env == {"LD_PRELOAD": str(fake_mimalloc)}


AVX512 = frozenset({"sse4_2", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"})


@pytest.mark.parametrize("choice", ["auto", "mimalloc"])
def test_avx512_is_forced_where_the_cpu_has_it(choice: str, fake_mimalloc: Path) -> None:
    plan = plan_allocator({ENV_CHOICE: choice}, platform="linux", flags=AVX512)
    assert plan is not None and plan.env["CT2_FORCE_CPU_ISA"] == "AVX512"
    without = plan_allocator({ENV_CHOICE: choice}, platform="linux", flags=AVX512 - {"avx512bw"})
    assert without is not None and "CT2_FORCE_CPU_ISA" not in without.env
    own = plan_allocator({ENV_CHOICE: choice, "CT2_FORCE_CPU_ISA": "AVX2"}, platform="linux", flags=AVX512)
    assert own is not None and "CT2_FORCE_CPU_ISA" not in own.env  # the user's choice is kept


def test_cpu_flags_reads_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx2\n")
    assert allocator.cpu_flags(str(cpuinfo)) == frozenset({"fpu", "sse", "avx512f", "avx2"})
    assert allocator.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("choice", [None, "auto", "glibc", "GLIBC"])
def test_glibc_switches_by_default(choice: str | None, fake_mimalloc: Path) -> None:
    # Measured at least as fast as mimalloc, and needs no package: the default even when mimalloc is installed.
    plan = plan_allocator({} if choice is None else {ENV_CHOICE: choice}, platform="linux")
    assert plan is not None and plan.name == "glibc"
    assert {k: plan.env[k] for k in GLIBC_ENV} == dict(GLIBC_ENV)
    assert plan.env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


def test_glibc_choice_keeps_the_users_values(fake_mimalloc: Path) -> None:
    environ = {ENV_CHOICE: "glibc", "MALLOC_ARENA_MAX": "4", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
    plan = plan_allocator(environ, platform="linux")
    assert plan is not None and plan.name == "glibc"
    assert "MALLOC_ARENA_MAX" not in plan.env  # not overridden
    assert plan.env["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1"


def test_unknown_or_unavailable_choice_warns_and_falls_back(no_mimalloc: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fastrerank.allocator"):
        assert plan_allocator({ENV_CHOICE: "tcmalloc"}, platform="linux").name == "glibc"  # type: ignore[union-attr]
        assert plan_allocator({ENV_CHOICE: "mimalloc"}, platform="linux").name == "glibc"  # type: ignore[union-attr]
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "'tcmalloc' is not valid (accepted: auto, mimalloc, glibc, system)" in messages
    assert "cmeel-mimalloc is not installed" in messages


def test_found_mimalloc_is_a_real_library() -> None:
    library = find_mimalloc()
    if library is None:
        pytest.skip("cmeel-mimalloc is not installed in this environment")
    assert library.is_file() and library.name.startswith("libmimalloc.so")


PROBE = (
    "import os, sys\n"
    "from fastrerank.allocator import reexec_with_fast_allocator\n"
    "print('start', flush=True)\n"
    "reexec_with_fast_allocator()\n"
    "maps = open('/proc/self/maps').read()\n"
    "print(os.environ.get('_FASTRERANK_ALLOCATOR_SET'), os.environ.get('MALLOC_ARENA_MAX'), 'libmimalloc' in maps)\n"
)


def _probe(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k not in (ENV_MARKER, ENV_CHOICE, "LD_PRELOAD", *GLIBC_ENV)}
    environ.update(env, PYTHONPATH=SRC)
    result = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="re-executing under an allocator is Linux-only")
def test_reexecutes_once_with_the_glibc_switches() -> None:
    # "start" twice: the original process and the re-executed one; the marker stops a third run.
    assert _probe(FASTRERANK_ALLOCATOR="glibc") == ["start", "start", "glibc 1 False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="re-executing under an allocator is Linux-only")
def test_opt_out_does_not_reexecute() -> None:
    assert _probe(FASTRERANK_ALLOCATOR="system") == ["start", "None None False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="re-executing under an allocator is Linux-only")
def test_default_reexecutes_with_the_glibc_switches() -> None:
    assert _probe() == ["start", "start", "glibc 1 False"]


@pytest.mark.skipif(find_mimalloc() is None, reason="cmeel-mimalloc is not installed in this environment")
def test_reexecutes_under_mimalloc_when_chosen() -> None:
    assert _probe(FASTRERANK_ALLOCATOR="mimalloc") == ["start", "start", "mimalloc None True"]


def test_the_command_line_runs_under_the_allocator(converted) -> None:  # type: ignore[no-untyped-def]
    """``fastrerank``'s main() re-executes itself once, then ranks as usual."""
    code = ("import os, sys\n"
            "print('marker', os.environ.get('_FASTRERANK_ALLOCATOR_SET'), file=sys.stderr, flush=True)\n"
            "from fastrerank.cli import main\n"
            "sys.exit(main())\n")
    env = {key: value for key, value in os.environ.items() if key not in (ENV_CHOICE, ENV_MARKER, "LD_PRELOAD")}
    done = subprocess.run([sys.executable, "-c", code, "rank", "--model", str(converted("tiny")), "apple", "apple pie"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("marker")] == ["marker None", "marker glibc"]
    assert '"index": 0' in done.stdout


@pytest.mark.parametrize(("environ", "platform", "expected"), [
    ({}, "linux", True),
    ({ENV_CHOICE: "auto"}, "linux", True),
    ({ENV_CHOICE: "glibc"}, "linux", True),
    ({ENV_CHOICE: "system"}, "linux", False),  # opt-out
    ({ENV_CHOICE: "mimalloc"}, "linux", False),  # the user wants another allocator
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "linux", False),
    ({"MALLOC_ARENA_MAX": "4"}, "linux", False),  # the user's own tuning, or the command line's
    ({}, "darwin", False),
])
def test_when_the_library_tunes_malloc(environ: dict[str, str], platform: str, expected: bool) -> None:
    assert allocator.should_tune_malloc(environ, platform=platform) is expected


TUNE_PROBE = (
    "import sys\n"
    "from fastrerank import Reranker, allocator\n"
    "print(allocator._tuned)\n"
    "Reranker(sys.argv[1], device='cpu')\n"
    "print(allocator._tuned, allocator.tune_malloc())\n"
    "import os; print(os.environ.get('CT2_FORCE_CPU_ISA'))\n"
)
AVX512_HERE = allocator._AVX512_FLAGS <= allocator.cpu_flags()


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", ["False", "True False", "AVX512" if AVX512_HERE else "None"]),
    ("system", ["False", "False False", "None"]),
])
def test_a_cpu_reranker_tunes_malloc_and_isa_once(choice: str, expected: list[str], converted) -> None:  # type: ignore[no-untyped-def]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key not in ("LD_PRELOAD", "CT2_FORCE_CPU_ISA")}
    env[ENV_CHOICE] = choice
    done = subprocess.run([sys.executable, "-c", TUNE_PROBE, str(converted("tiny"))], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


AVX512 = frozenset({"avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


@pytest.mark.parametrize(("environ", "flags", "expected", "changed"), [
    ({}, AVX512, {"CT2_FORCE_CPU_ISA": "AVX512"}, True),
    ({ENV_CHOICE: "glibc"}, AVX512, {ENV_CHOICE: "glibc", "CT2_FORCE_CPU_ISA": "AVX512"}, True),
    ({"CT2_FORCE_CPU_ISA": "AVX2"}, AVX512, {"CT2_FORCE_CPU_ISA": "AVX2"}, False),  # the user's choice wins
    ({ENV_CHOICE: "system"}, AVX512, {ENV_CHOICE: "system"}, False),  # opt-out
    ({}, frozenset({"avx2", "avx512f"}), {}, False),  # no AVX-512BW/VL: CTranslate2's AVX-512 kernels need them
])
def test_tune_cpu_isa(environ: dict[str, str], flags: frozenset[str], expected: dict[str, str], changed: bool) -> None:
    assert allocator.tune_cpu_isa(environ, flags=flags) is changed
    assert environ == expected
