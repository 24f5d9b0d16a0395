"""The harness every script in ``experiments/`` runs on: flags, the run folder, config, results.

A script builds its parser here, parses with :func:`parse`, and runs inside :func:`start`::

    p = harness.parser(__file__, __doc__)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    args = harness.parse(p, argv)
    with harness.start(args) as run:
        data = ...                                   # load the data
        run.write_config({"train_examples": n})      # after the checks, before training
        ...
        run.write_results({"accuracy": accuracy})

    if __name__ == "__main__":
        harness.main(main)

Common flags: ``--out`` (default ``runs/<script name>``), ``--resume``, ``--seed``, ``--smoke``,
``--no-progress``, ``--deterministic`` (deterministic GPU kernels:
``jaxrnn.train.use_deterministic_ops``), ``--override KEY=VALUE``; ``--help`` shows every
default.

The run folder. The first line a script prints names it. ``<out>/.lock`` is held
(``fcntl.flock``) while the run is alive, so a second run into the same folder stops at once
(exit 2, naming the other process); the kernel drops the lock when a process dies, even by
``kill -9``. A folder that holds a run (``config.json`` or checkpoints) is only continued with
``--resume``. ``--resume`` compares the settings the run would use (every flag after presets
are filled in, except those that do not change the computation: ``--out``, ``--resume``,
``--no-progress``, ``--max-steps``, ``--override`` and each script's own list) and the
script's data records with ``config.json``; any difference stops it (exit 2, each flag with
both values) before anything is written, unless ``--override KEY=VALUE`` names it. An
override is recorded in ``config.json`` under ``"overrides"`` with the step it took effect at;
the top-level values stay those the run started with.

``config.json``: ``"script"``, every setting, the script's data records, ``"environment"``
(versions, backend, devices, host allocator: never compared), ``"overrides"`` and ``"resumes"``
(step and environment of each continuation). ``results.json``: the script's results. Both are
written atomically, as indented JSON.

Exit codes (defined in :mod:`jaxrnn.train.cli`): 2 for bad arguments, bad data, a refused run
or no intact checkpoint; 3 for a diverged run (non-finite or overflowing loss or perplexity); 4
when the operating system refused a write (full disk: the path and errno are named).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxrnn.train.cli import (  # noqa: F401  (re-exported for the scripts)
    EXIT_BAD_INPUT,
    EXIT_NON_FINITE,
    EXIT_OS_ERROR,
    exit_code,
    fraction,
    positive_float,
    positive_int,
    rate,
    run_for_script,
)

NOT_COMPARED = frozenset({"out", "resume", "no_progress", "override", "max_steps"})
_NOT_RECORDED = ("resume", "override")
"""Settings that never stop a ``--resume``: where outputs go, how progress shows, when to stop."""
_RESERVED = ("script", "environment", "overrides", "resumes")


# --------------------------------------------------------------------------------- flags


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring's layout kept, and ``(default: X)`` after every flag that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, list) and not default) or "%(default)" in text):
            return text
        return super()._get_help_string(action)


class _Info:
    """What :func:`parse` learned, kept on the namespace for :func:`start`."""

    def __init__(self, parser: argparse.ArgumentParser, script: str, overrides: dict[str, Any]):
        self.parser, self.script, self.overrides = parser, script, overrides


def parser(script_file: str, doc: str, *, smoke: str | None = "seconds-long check run",
           fast_smoke_compiles: bool = False) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the common flags, its description and epilog from ``doc``.

    Args:
      script_file: the script's ``__file__``; its stem names the default ``--out``.
      doc: the script's docstring: first paragraph the description, the rest the epilog.
      smoke: help text of ``--smoke``; ``None`` leaves the flag out.
      fast_smoke_compiles: with ``--smoke``, compile at XLA optimisation level 0
        (:func:`cheap_compiles`).

    Returns:
      The parser; add the script's own flags, then call :func:`parse`.
    """
    name = Path(script_file).stem
    head, _, tail = doc.strip("\n").partition("\n\n")
    p = argparse.ArgumentParser(prog=f"{name}.py", description=head, epilog=tail,
                                formatter_class=HelpFormatter)
    p.set_defaults(_script=name, _fast_smoke=fast_smoke_compiles)
    group = p.add_argument_group("run")
    group.add_argument("--out", type=Path, default=Path("runs") / name,
                       help="output folder (config.json, results.json, ...)")
    group.add_argument("--resume", action="store_true",
                       help="continue the run in --out (its settings must match)")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    if smoke is not None:
        group.add_argument("--smoke", action="store_true", help=smoke)
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic GPU kernels (XLA_FLAGS=--xla_gpu_deterministic_ops="
                            "true), so kill -9 + --resume is bitwise on a GPU too; slower there, "
                            "no effect on a CPU or TPU")
    group.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="with --resume: change this setting from the resumed step on "
                            "(repeatable; recorded in config.json)")
    return p


def add_device_flags(p: argparse.ArgumentParser) -> None:
    """``--devices``, ``--coordinator-address``, ``--num-processes``, ``--process-id`` (never
    compared on ``--resume``: the global batch, and so the result, does not depend on them)."""
    group = p.add_argument_group("devices and hosts (jaxrnn.distributed)")
    group.add_argument("--devices", type=int, default=None,
                       help="data-parallel over this many devices (default: every visible "
                            "device); the global batch is split across them")
    group.add_argument("--coordinator-address", default=None,
                       help="host:port of process 0, for a run over several processes "
                            "(or $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, default=None,
                       help="number of processes (or $JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None,
                       help="this process's index, 0 .. num_processes-1 (or $JAX_PROCESS_ID)")


DEVICE_FLAGS = ("devices", "coordinator_address", "num_processes", "process_id")


def device_mesh(args: argparse.Namespace) -> Any:
    """Joins the processes named by :func:`add_device_flags`'s flags
    (:func:`jaxrnn.distributed.initialize`) and returns the data-parallel mesh over
    ``--devices`` devices (every visible one by default); a bad value stops the script
    (exit 2, naming the flag)."""
    from jaxrnn import distributed

    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    except ValueError as err:
        _fail(f"--coordinator-address, --num-processes, --process-id: {err}")
    try:
        return distributed.make_mesh(args.devices)
    except ValueError as err:
        _fail(str(err))  # names --devices


def check_batch_size(mesh: Any, batch_size: int, flag: str = "--batch-size") -> None:
    """Stops the script (exit 2, naming ``flag``) unless ``batch_size`` splits evenly over
    the mesh's devices."""
    from jaxrnn import distributed

    try:
        distributed.check_batch_size(batch_size, mesh, name=flag)
    except ValueError as err:
        _fail(str(err))


def preset_flags(p: argparse.ArgumentParser, presets: Mapping[str, Mapping[str, Any]],
                 flags: Mapping[str, tuple[Callable[[str], Any], str]]) -> None:
    """Adds one flag per entry of ``flags`` (``name: (type, help)``) whose default comes from
    a preset; the help lists each preset's value. Fill them in with :func:`fill_presets`."""
    for name, (kind, text) in flags.items():
        values = ", ".join(f"{key} {preset.get(name)}" for key, preset in presets.items())
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"{text} (default by preset: {values})".lstrip())


def fill_presets(args: argparse.Namespace, preset: Mapping[str, Any],
                 names: Iterable[str]) -> None:
    """Sets each of ``names`` that was not given on the command line to ``preset``'s value."""
    for name in names:
        if getattr(args, name) is None:
            setattr(args, name, preset[name])


def _flag(p: argparse.ArgumentParser, dest: str) -> str:
    for action in p._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return dest


def _convert(p: argparse.ArgumentParser, action: argparse.Action, text: str) -> Any:
    where = f"--override {_flag(p, action.dest)}={text}"
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            p.error(f"{where}: expected true or false")
        return lowered in ("true", "1", "yes")
    try:
        value = action.type(text) if action.type is not None else text
    except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
        p.error(f"{where}: {err}")
    if action.choices is not None and value not in action.choices:
        p.error(f"{where}: expected one of {sorted(action.choices)}")
    return value


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parses ``argv`` and applies ``--override KEY=VALUE`` (KEY: a flag, ``lr`` or ``--lr``).

    Exits with code 2 for an unknown key, a bad value, or ``--override`` without ``--resume``.
    """
    args = p.parse_args(argv)
    actions = {a.dest: a for a in p._actions if a.option_strings}
    overrides: dict[str, Any] = {}
    for item in args.override:
        key, sep, text = item.partition("=")
        dest = key.strip().lstrip("-").replace("-", "_")
        if not sep or dest not in actions or dest in NOT_COMPARED | {"help"}:
            valid = sorted(_flag(p, d) for d in actions if d not in NOT_COMPARED | {"help"})
            p.error(f"--override {item!r}: expected KEY=VALUE with KEY among {', '.join(valid)}")
        overrides[dest] = _convert(p, actions[dest], text)
        setattr(args, dest, overrides[dest])
    if overrides and not args.resume:
        p.error("--override changes a setting of a run being continued: use it with --resume "
                "(for a new run, set the flag itself)")
    if args._fast_smoke and getattr(args, "smoke", False):
        cheap_compiles()
    args._info = _Info(p, args._script, overrides)
    return args


def cheap_compiles() -> None:
    """Compiles at XLA's LLVM optimisation level 0 (2-3x faster compiles on a CPU, slower
    steps: for seconds-long runs). Only takes effect before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


# ------------------------------------------------------------------------------ json files


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data (paths as strings, arrays as lists, tuples as lists)."""
    return json.loads(json.dumps(value, default=_jsonable))


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes ``value`` as indented JSON, atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def environment() -> dict[str, Any]:
    """Versions, backend, devices and host allocator of this process (never compared)."""
    import jax

    from jaxrnn import train

    return {"python": platform.python_version(), "jax_version": jax.__version__,
            "backend": jax.default_backend(), "devices": jax.device_count(),
            "processes": jax.process_count(), "platform": platform.platform(),
            "host_allocator": train.allocator_settings()}


# -------------------------------------------------------------------------------- the run


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def _latest_step(folder: Path) -> int | None:
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=None)


class Run:
    """The run in ``out``: its lock, settings and files (see the module docstring).

    Attributes:
      out: the output folder.
      args: the parsed flags.
      resume_step: the latest checkpoint's step when continuing a run, else ``None``.
      previous: the ``config.json`` of the run being continued, or ``None``.
    """

    def __init__(self, args: argparse.Namespace, *, not_compared: Iterable[str] = (),
                 checkpoints: str | os.PathLike | None = None) -> None:
        info: _Info = args._info
        self.args, self.out, self._info = args, Path(args.out), info
        self._not_compared = NOT_COMPARED | set(not_compared)
        self._checkpoints = Path(checkpoints) if checkpoints else self.out / "checkpoints"
        self._lock_fd: int | None = None
        self.previous: dict[str, Any] | None = None
        self.resume_step: int | None = None
        self._overrides: list[dict[str, Any]] = []
        print(f"output folder: {self.out}", flush=True)
        self._lock()
        try:
            self._check_settings()
        except BaseException:
            self.close()
            raise

    # the lock -------------------------------------------------------------------------
    def _lock(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            _fail(f"another run (pid {holder}) is writing into {self.out}; wait for it to end, "
                  "stop it, or choose another --out")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Releases the lock (the process's death releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # the settings ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Every flag's value, as JSON data (the harness's private entries left out)."""
        return to_json({k: v for k, v in vars(self.args).items()
                        if not k.startswith("_") and k not in _NOT_RECORDED})

    def _effective(self) -> dict[str, Any]:
        assert self.previous is not None
        values = dict(self.previous)
        for record in self.previous.get("overrides", []):
            values[record["key"]] = record["to"]
        return values

    def _check_settings(self) -> None:
        config_path = self.out / "config.json"
        latest = _latest_step(self._checkpoints)
        holds_run = config_path.exists() or latest is not None
        if holds_run and not self.args.resume:
            where = f"checkpoints up to step {latest}" if latest is not None else "config.json"
            _fail(f"{self.out} already holds a run ({where}); pass --resume to continue it, "
                  "or choose another --out")
        if not config_path.exists():
            self.resume_step = latest
            return
        try:
            self.previous = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            _fail(f"--resume: cannot read {config_path}: {err}")
        self.resume_step = latest
        old = self._effective()
        p = self._info.parser
        defaults = {a.dest: a.default for a in p._actions}
        changed = []
        for key, value in self.settings().items():
            if key in self._not_compared:
                continue
            recorded = key in old
            before = old[key] if recorded else to_json(defaults.get(key))
            if before == value:
                continue
            changed.append((key, before, value, recorded))
        refused = [c for c in changed if c[0] not in self._info.overrides]
        if refused:
            lines = [f"  {_flag(p, key)}: {before!r} in the run"
                     f"{'' if recorded else ' (not recorded; its default)'}, {value!r} requested"
                     for key, before, value, recorded in refused]
            _fail(f"--resume: the settings differ from the run in {self.out} (config.json):\n"
                  + "\n".join(lines) + "\nrepeat the run's flags, or pass --override "
                  "KEY=VALUE for each change you mean (recorded in config.json)")
        self._overrides = [{"key": key, "from": before, "to": value, **self._position()}
                           for key, before, value, _ in changed]
        if self.resume_step is not None:
            print(f"resuming from step {self.resume_step}", flush=True)
        elif (done := self._position().get("completed")):
            print(f"resuming with {len(done)} finished: {', '.join(done)}", flush=True)

    def _position(self) -> dict[str, Any]:
        """Where a continuation starts: the checkpoint step, or the completed units."""
        done = self.out / "completed"
        if self.resume_step is None and done.is_dir():
            return {"step": None, "completed": sorted(p.stem for p in done.glob("*.json"))}
        return {"step": self.resume_step}

    def write_config(self, records: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Writes ``config.json`` (a new run) or adds this continuation to it (``--resume``).

        Args:
          records: what the script derived from its data (``steps_per_epoch``, sizes, ...);
            when continuing, a record that differs from the run's stops the script (exit 2).

        Returns:
          The configuration written.
        """
        records = to_json(dict(records or {}))
        if self.previous is None:
            config = {"script": self._info.script, **self.settings(), **records,
                      "environment": environment(), "overrides": [], "resumes": []}
        else:
            differ = [f"  {key}: {self.previous.get(key)!r} in the run, {value!r} now"
                      for key, value in records.items() if self.previous.get(key) != value]
            if differ:
                _fail(f"--resume: the data differ from the run in {self.out}:\n"
                      + "\n".join(differ))
            config = dict(self.previous)
            config["overrides"] = [*config.get("overrides", []), *self._overrides]
            config["resumes"] = [*config.get("resumes", []),
                                 {**self._position(), "environment": environment()}]
        write_json(self.out / "config.json", config)
        return config

    def write_results(self, results: Mapping[str, Any] | list[Any]) -> None:
        """Writes ``results.json`` (atomically)."""
        write_json(self.out / "results.json", results)

    # completed units of work (scripts without step checkpoints) -----------------------
    def completed(self, name: str) -> Any | None:
        """The saved record of a unit of work ``name`` when continuing a run, else ``None``."""
        path = self.out / "completed" / f"{name}.json"
        if not self.args.resume or not path.exists():
            return None
        return json.loads(path.read_text())

    def save_completed(self, name: str, record: Any) -> None:
        """Saves a finished unit of work so that ``--resume`` skips it."""
        (self.out / "completed").mkdir(exist_ok=True)
        write_json(self.out / "completed" / f"{name}.json", record)


def start(args: argparse.Namespace, *, not_compared: Iterable[str] = (),
          checkpoints: str | os.PathLike | None = None) -> Run:
    """Opens the run in ``args.out``: prints where the outputs go, takes the lock, checks
    ``--resume`` against ``config.json`` (exit 2 on a conflict) and prints
    ``resuming from step N`` (or, for a script saving completed units, which are done).

    Args:
      args: from :func:`parse`.
      not_compared: the script's flags that do not change the computation (when to stop,
        what to print, decoding-only settings).
      checkpoints: where the step checkpoints are (default ``<out>/checkpoints``).
    """
    return Run(args, not_compared=not_compared, checkpoints=checkpoints)


def main(script_main: Callable[[], Any]) -> None:
    """A script's ``__main__``: host allocator setup (:mod:`jaxrnn.train.host`), then
    ``script_main()``; an int it returns is the exit code. A known error it raises (bad data,
    a diverged run, a corrupt checkpoint, a refused write: :func:`jaxrnn.train.cli.exit_code`)
    is printed as one line and exits with its code; any other error keeps its traceback."""
    from jaxrnn import train

    if "--deterministic" in sys.argv[1:]:  # before the backend starts (and survives the re-exec)
        train.use_deterministic_ops()
    train.reexec_with_allocator_settings()
    try:
        code = script_main()
    except Exception as err:
        known = exit_code(err)
        if known is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        code = known
    sys.exit(code if isinstance(code, int) else 0)


# -------------------------------------------------------------------------- model pieces


def dense_init(key: Any, in_size: int, out_size: int, *,
               distribution: str = "uniform") -> dict[str, Any]:
    """A linear layer's ``{"w": [in_size, out_size], "b": [out_size]}``, ``b = 0``.

    Args:
      key: a PRNG key.
      in_size: input features.
      out_size: output features.
      distribution: ``"uniform"``: ``w ~ U(+-1/sqrt(in_size))`` (PyTorch's ``nn.Linear``);
        ``"normal"``: ``w ~ N(0, 1/in_size)`` (LeCun normal).
    """
    import jax
    import jax.numpy as jnp

    bound = 1.0 / math.sqrt(in_size)
    if distribution == "uniform":
        w = jax.random.uniform(key, (in_size, out_size), jnp.float32, -bound, bound)
    elif distribution == "normal":
        w = (jax.random.normal(key, (out_size, in_size), jnp.float32) * bound).T
    else:
        raise ValueError(f"dense_init: distribution={distribution!r}; expected 'uniform' or "
                         "'normal'")
    return {"w": w, "b": jnp.zeros((out_size,), jnp.float32)}


def dense(params: Mapping[str, Any], x: Any) -> Any:
    """``x @ w + b`` over the last axis of ``x``."""
    b = params["b"]
    return x @ params["w"] + b.reshape((1,) * (x.ndim - 1) + b.shape)


# ---------------------------------------------------------------------------- cell specs


def make_cell(spec: str, hidden_size: int, **options: Any) -> Any:
    """The cell named by ``spec``: a :mod:`jaxrnn.variants` name, or ``"module:attr"`` naming
    a cell class or a factory ``f(hidden_size, **options)``."""
    from jaxrnn import variants

    if ":" not in spec or hasattr(variants, "register"):
        return variants.make(spec, hidden_size, **options)
    module, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cell spec {spec!r}: cannot import {attr!r} from {module!r}: "
                         f"{err}") from None
    return target(hidden_size, **options)


def check_cells(p: argparse.ArgumentParser, specs: Iterable[str], flag: str = "--variants"
                ) -> tuple[str, ...]:
    """``specs`` checked (each must build a cell of hidden size 4); exits 2 naming a bad one
    and the valid names."""
    from jaxrnn import variants

    specs = tuple(specs)
    for spec in specs:
        try:
            make_cell(spec, 4)
        except (ValueError, TypeError) as err:
            p.error(f"{flag}: unknown variant {spec!r} ({err}); valid variants: "
                    f"{', '.join(variants.names())}, or module:attr naming a cell class or "
                    "factory")
    return specs


# ------------------------------------------------------------------------ training, plots


def fit(run: Run, **kwargs: Any) -> tuple[Any, dict[str, Any]] | int:
    """:func:`run_for_script` into the run's folder: ``out_dir`` is ``run.out``, ``resume``
    is ``--resume``, and ``--no-progress`` turns the progress bar off; every other keyword
    argument is :func:`jaxrnn.train.run_training`'s.

    Returns:
      ``(state, summary)``, or the exit code after the reason was printed (3 for a
      non-finite loss).
    """
    args = run.args
    kwargs.setdefault("progress", False if getattr(args, "no_progress", False) else None)
    return run_for_script(out_dir=run.out, resume=bool(args.resume), **kwargs)


def plot_curves(run: Run, name: str, **kwargs: Any) -> None:
    """Plots the run's ``metrics.jsonl`` into ``<out>/<name>`` (keyword arguments as
    :func:`jaxrnn.train.plot_curves`); a log with nothing to plot (a resumed run that had
    already finished) prints why instead of failing."""
    from jaxrnn import train

    try:
        train.plot_curves(run.out / "metrics.jsonl", run.out / name, **kwargs)
    except ValueError as err:
        print(f"(no {name}: {err})")


def count_params(params: Any) -> int:
    """The number of scalars in a parameter tree."""
    import jax

    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
