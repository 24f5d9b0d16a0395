"""jaxrnn.train.host: when a script re-executes itself with glibc's allocator settings, and how."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from jaxrnn.train import host


class FakeExec:
    def __init__(self):
        self.calls = []

    def __call__(self, executable, argv, env):
        self.calls.append((executable, list(argv), dict(env)))


ON_GLIBC = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator (the re-exec happens only on Linux with glibc)")


def clean_environ():
    """This process's environment without any allocator variable or the opt-out."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k != host.OPT_OUT_ENV}


def run(environ, system="Linux", libc="glibc"):
    fake = FakeExec()
    done = host.reexec_with_allocator_settings(
        environ=environ, argv=["python", "-u", "script.py", "--flag"], executable="/bin/py",
        system=system, libc=libc, execve=fake)
    return done, fake.calls


def test_reexecs_once_with_the_settings_and_the_same_command_line():
    done, calls = run({"HOME": "/root", "PATH": "/bin"})
    assert done and len(calls) == 1
    executable, argv, env = calls[0]
    assert executable == "/bin/py"
    assert argv == ["python", "-u", "script.py", "--flag"]
    assert env == {"HOME": "/root", "PATH": "/bin", **host.ALLOCATOR_ENV}
    # the re-executed program sees the variables set, so it does not re-execute again
    assert run(env) == (False, [])


@pytest.mark.parametrize("environ", [
    {"JAXRNN_SYSTEM_MALLOC": "1"},                  # opt-out
    {"JAXRNN_SYSTEM_MALLOC": "true"},
    {"MALLOC_MMAP_THRESHOLD_": "1", "MALLOC_TRIM_THRESHOLD_": "2", "MALLOC_ARENA_MAX": "3"},
])
def test_leaves_the_process_alone_when_told_or_already_set(environ):
    assert run(environ) == (False, [])


@pytest.mark.parametrize("user", [
    {"MALLOC_MMAP_THRESHOLD_": "131072"},
    {"MALLOC_TRIM_THRESHOLD_": "0"},
    {"MALLOC_ARENA_MAX": "2"},                      # common in container images
    {"MALLOC_ARENA_MAX": "4", "MALLOC_TRIM_THRESHOLD_": "0"},
])
def test_the_users_own_values_win_and_only_the_missing_ones_are_added(user):
    done, calls = run({"PATH": "/bin", **user})
    assert done and len(calls) == 1
    env = calls[0][2]
    for name, value in host.ALLOCATOR_ENV.items():
        assert env[name] == user.get(name, value)
    assert env["PATH"] == "/bin" and set(env) == {"PATH", *host.ALLOCATOR_ENV}
    assert run(env) == (False, [])                  # and it does not re-execute again


@pytest.mark.parametrize("system, libc", [("Darwin", ""), ("Windows", ""), ("Linux", "musl"),
                                          ("Linux", "")])
def test_only_on_linux_with_glibc(system, libc):
    assert run({}, system=system, libc=libc) == (False, [])


def test_opt_out_zero_does_not_opt_out():
    done, calls = run({"JAXRNN_SYSTEM_MALLOC": "0"})
    assert done and len(calls) == 1


def test_allocator_settings_reports_the_variables():
    env = {"MALLOC_MMAP_THRESHOLD_": "5", "OTHER": "x"}
    assert host.allocator_settings(env) == {
        "MALLOC_MMAP_THRESHOLD_": "5", "MALLOC_TRIM_THRESHOLD_": None,
        "MALLOC_ARENA_MAX": None, "JAXRNN_SYSTEM_MALLOC": None}


@ON_GLIBC
def test_a_real_script_restarts_with_the_settings_and_its_arguments(tmp_path):
    script = tmp_path / "prog.py"
    log = tmp_path / "starts.txt"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(log)!r}, 'a').write('start\\n')\n"
        "from jaxrnn.train.host import reexec_with_allocator_settings\n"
        "reexec_with_allocator_settings()\n"
        "print(json.dumps({'argv': sys.argv[1:], 'pid': os.getpid(),\n"
        "                  'mmap': os.environ.get('MALLOC_MMAP_THRESHOLD_'),\n"
        "                  'trim': os.environ.get('MALLOC_TRIM_THRESHOLD_'),\n"
        "                  'arenas': os.environ.get('MALLOC_ARENA_MAX')}))\n")
    env = clean_environ()
    proc = subprocess.Popen([sys.executable, str(script), "a b", "--x=1"], env=env,
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    got = json.loads(out)
    assert got["argv"] == ["a b", "--x=1"]
    assert got["pid"] == proc.pid            # execve: the same process, so kill -9 still reaches it
    assert (got["mmap"], got["trim"], got["arenas"]) == (
        host.ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"], host.ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"],
        host.ALLOCATOR_ENV["MALLOC_ARENA_MAX"])
    assert log.read_text() == "start\nstart\n"  # started twice: the original and the re-exec


def test_allocator_environ_follows_the_same_rules():
    linux = dict(system="Linux", libc="glibc")
    assert host.allocator_environ({"A": "1"}, **linux) == {"A": "1", **host.ALLOCATOR_ENV}
    assert host.allocator_environ({"MALLOC_TRIM_THRESHOLD_": "0"}, **linux) == {
        **host.ALLOCATOR_ENV, "MALLOC_TRIM_THRESHOLD_": "0"}
    full = dict(host.ALLOCATOR_ENV, A="1")
    for environ in (full, {"JAXRNN_SYSTEM_MALLOC": "1"}):
        assert host.allocator_environ(environ, **linux) == environ
    assert host.allocator_environ({"A": "1"}, system="Darwin", libc="") == {"A": "1"}


@ON_GLIBC
def test_the_settings_keep_a_worker_threads_large_blocks_in_the_process(tmp_path):
    """What the settings are for: a 100 MiB block that a non-main thread frees and allocates
    again (XLA's buffers) lands on fresh zero-filled pages under glibc's defaults (such a block
    exceeds a thread arena's 64 MiB heaps, so it is mmapped), and on reused pages with them."""
    script = tmp_path / "blocks.py"
    script.write_text(
        "import ctypes, json, resource, threading\n"
        "from jaxrnn.train.host import reexec_with_allocator_settings\n"
        "reexec_with_allocator_settings()\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "faults = []\n"
        "def work():\n"
        "    for _ in range(3):\n"
        "        p = libc.malloc(100 << 20)\n"
        "        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "        ctypes.memset(p, 1, 100 << 20)\n"
        "        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
        "        libc.free(p)\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "print(json.dumps(faults))\n")
    base = clean_environ()
    def faults(env):
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return json.loads(out)

    # fresh pages again on every reuse: 25,600 faults with 4 KiB pages, 50 with 2 MiB ones
    default = faults({**base, "JAXRNN_SYSTEM_MALLOC": "1"})
    assert min(default[1:]) >= 40, default
    settled = faults(base)
    assert max(settled[1:]) <= 2, settled              # the same pages, reused


@pytest.mark.parametrize("platforms, want", [
    ("cpu", True), ("cuda", False), ("tpu", False), ("rocm,cpu", False), ("cpu,cuda", True),
    (" CPU ", True),
])
def test_runs_on_cpu_follows_jax_platforms(platforms, want):
    assert host.runs_on_cpu({"JAX_PLATFORMS": platforms}, find_spec=lambda name: object()) is want


def test_runs_on_cpu_without_jax_platforms_looks_for_accelerator_plugins():
    assert host.runs_on_cpu({}, find_spec=lambda name: None)
    assert not host.runs_on_cpu({}, find_spec=lambda name: object() if name == "libtpu" else None)


def test_no_reexec_for_a_run_on_an_accelerator():
    calls = []
    done = host.reexec_with_allocator_settings(
        environ={"JAX_PLATFORMS": "cuda"}, argv=["python", "x.py"], executable="/py",
        system="Linux", libc="glibc", execve=lambda *a: calls.append(a))
    assert not done and not calls


def test_use_deterministic_ops_adds_the_flag_once():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    host.use_deterministic_ops(environ)
    host.use_deterministic_ops(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2", "--xla_gpu_deterministic_ops=true"]
    empty: dict[str, str] = {}
    host.use_deterministic_ops(empty)
    assert empty == {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}
