"""The preprocessor engine: user programs evaluated with asteval in a disposable worker process.

Preprocessors are user-written Python-like programs that gate event scripts. asteval already
refuses imports, dunder attributes and most dangerous builtins, but it cannot stop
`while True: pass` and it shares memory with whoever calls it. So programs never run in the node:
`Evaluator` keeps one small worker process (this same file, loaded by path so it imports neither
lanqueue nor aiohttp), talks to it over JSON lines on its stdin/stdout, and kills it when a
program overruns its time limit or the worker dies. The next evaluation starts a fresh worker.

Inside the worker, defence in depth: numpy is kept out of asteval, `open` and `with` are
removed, `print` only writes to a bounded buffer, and resource limits (Unix) cap the address
space (a memory bomb becomes a MemoryError), forbid new file descriptors (no files, no sockets),
writing files, and forking (except as root, which RLIMIT_NPROC does not bind). The worker gets
an empty environment and `/` as its directory, so nothing of the node leaks into it.

The outcome of a program is its last value: a dict -> fill placeholders ("fill"), truthy ->
run the script ("run"), false/None -> skip ("skip"), an exception, a timeout, a crash ->
"error" with a message. Programs of one run share one interpreter, as in the original plugin,
so one preprocessor may set a variable for the next, and `symtable_diff` shows what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "DEFAULT_MEMORY_LIMIT",
    "Decision",
    "Evaluation",
    "ScriptRun",
    "Evaluator",
    "async_evaluate",
    "async_run",
]

DEFAULT_TIME_LIMIT = 1.0
"""Seconds one program may run before its worker is killed."""

DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024
"""Bytes of address space a worker may add on top of what it uses after start-up."""

STARTUP_TIMEOUT = 15.0
"""Seconds a new worker may take to say it is ready (slow SD cards on a Raspberry Pi)."""

OUTPUT_LIMIT = 16 * 1024
"""Characters of stdout/stderr kept per program; the rest is replaced by a note."""

REPR_LIMIT = 1000
"""Characters of one value's repr kept in symtable_diff."""

DIFF_LIMIT = 200
"""Symbols reported in symtable_diff at most."""

MAPPING_LIMIT = 64 * 1024
"""Characters of placeholder values a program may return in total."""

_LINE_LIMIT = 4 * 1024 * 1024  # the parent's read buffer for one answer line

Decision = Literal["run", "skip", "fill", "error"]


@dataclass(frozen=True)
class Evaluation:
    """What one program decided, and what it printed."""

    decision: Decision
    mapping: dict[str, str] | None = None  # placeholder values, only for "fill"
    message: str = ""  # the error text, only for "error"
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class ScriptRun:
    """The evaluations of one run, in order, and the symbols the programs changed (as reprs)."""

    evaluations: tuple[Evaluation, ...]
    symtable_diff: dict[str, str] = field(default_factory=dict)


_NO_PROGRAM = Evaluation("run")


class _WorkerGone(Exception):
    """The worker stopped answering: killed on a timeout, crashed, or never started."""


class Evaluator:
    """One worker process, used by one event loop, one run at a time.

    A node owns one `Evaluator` for its lifetime (`async with Evaluator() as engine:`), so
    evaluations do not pay a process start each; `async_close()` is idempotent.
    """

    def __init__(self, *, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self._memory_limit = memory_limit
        self._startup_timeout = startup_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.workers_started = 0  # observability: how often a worker had to be (re)started

    async def __aenter__(self) -> Evaluator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_close()

    async def async_close(self) -> None:
        """Stop the worker; later runs raise RuntimeError."""
        self._closed = True
        async with self._lock:
            await self._stop(graceful=True)

    async def async_evaluate(self, program: str, symbols: Mapping[str, Any], *,
                             time_limit: float = DEFAULT_TIME_LIMIT) -> Evaluation:
        """Evaluate one program with `symbols` in a fresh interpreter."""
        result = await self.async_run(symbols, [program], time_limit=time_limit)
        return result.evaluations[0]

    async def async_run(self, symbols: Mapping[str, Any], programs: Sequence[str | None], *,
                        time_limit: float = DEFAULT_TIME_LIMIT) -> ScriptRun:
        """Evaluate `programs` in order in one interpreter seeded with `symbols`.

        An empty or None program needs no evaluation and decides "run". `symbols` are passed
        as JSON (anything JSON cannot carry becomes its str()). If a program overruns or
        kills the worker, the programs after it continue in a fresh interpreter seeded
        with `symbols` again, so one bad preprocessor cannot silence the others.
        """
        if self._closed:
            raise RuntimeError("the preprocessor engine is closed")
        payload = json.loads(json.dumps(dict(symbols), default=str))
        async with self._lock:
            return await self._run_locked(payload, programs, time_limit)

    async def _run_locked(self, symbols: dict[str, Any], programs: Sequence[str | None],
                          time_limit: float) -> ScriptRun:
        if self._closed:  # closed while this run waited for the lock
            raise RuntimeError("the preprocessor engine is closed")
        evaluations: list[Evaluation] = []
        seeded = False
        startup_error = ""
        for program in programs:
            if program is None or not program.strip():
                evaluations.append(_NO_PROGRAM)
                continue
            if startup_error:
                evaluations.append(Evaluation("error", message=startup_error))
                continue
            if not seeded:
                try:
                    await self._seed(symbols)
                except _WorkerGone as exc:
                    startup_error = f"preprocessor engine unavailable: {exc}"
                    evaluations.append(Evaluation("error", message=startup_error))
                    continue
                seeded = True
            evaluation = await self._evaluate(program, time_limit)
            seeded = self._proc is not None
            evaluations.append(evaluation)
        diff = await self._diff() if seeded else {}
        return ScriptRun(tuple(evaluations), diff)

    async def _seed(self, symbols: dict[str, Any]) -> None:
        if self._proc is None:
            await self._start()
        answer = await self._request({"op": "reset", "symbols": symbols}, self._startup_timeout)
        if answer.get("ok") is not True:
            raise _WorkerGone(str(answer.get("message") or answer.get("error")))

    async def _evaluate(self, program: str, time_limit: float) -> Evaluation:
        try:
            answer = await self._request({"op": "eval", "program": program}, time_limit)
        except _WorkerGone as exc:
            return Evaluation("error", message=str(exc))
        decision = answer.get("decision")
        if decision not in ("run", "skip", "fill", "error"):
            return Evaluation("error", message=str(answer.get("error", "malformed answer")))
        return Evaluation(
            decision=decision,
            mapping=answer.get("mapping"),
            message=answer.get("message", ""),
            stdout=answer.get("stdout", ""),
            stderr=answer.get("stderr", ""),
        )

    async def _diff(self) -> dict[str, str]:
        try:
            answer = await self._request({"op": "diff"}, self._startup_timeout)
        except _WorkerGone:
            return {}
        return dict(answer.get("diff", {}))

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer; a late or missing answer kills the worker."""
        assert self._proc is not None
        proc = self._proc
        try:
            return await asyncio.wait_for(_exchange(proc, message), timeout)
        except TimeoutError:
            await self._stop(graceful=False)
            raise _WorkerGone(f"preprocessor stopped: took longer than {timeout:g} s") from None
        except asyncio.CancelledError:
            self._abandon()  # its late answer must never be read as the next request's
            raise
        except (_WorkerGone, OSError, ValueError) as exc:
            code = proc.returncode
            await self._stop(graceful=False)
            raise _WorkerGone(_death_message(exc, code)) from None

    async def _start(self) -> None:
        argv = [sys.executable, "-I", "-c", _BOOT, os.path.abspath(__file__),
                json.dumps([os.path.abspath(p) for p in sys.path if isinstance(p, str)]),
                str(self._memory_limit)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=_worker_env(), cwd=os.path.abspath(os.sep),
                limit=_LINE_LIMIT)
        except OSError as exc:
            raise _WorkerGone(f"cannot start a worker: {exc}") from None
        self._proc = proc
        self.workers_started += 1
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self._startup_timeout)  # type: ignore[union-attr]
        except TimeoutError:
            line = b""
        except asyncio.CancelledError:
            self._abandon()
            raise
        if not _is_ready(line):
            await self._stop(graceful=False)
            raise _WorkerGone("the worker did not start")

    def _abandon(self) -> None:
        """Kill the worker without waiting (for cancellation); asyncio reaps it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _stop(self, *, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            if proc is not None:
                await proc.wait()
            return
        if graceful and proc.stdin is not None:
            proc.stdin.close()  # the worker exits on end of input
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 1.0)
                return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _exchange(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    if not line:
        raise _WorkerGone("the worker ended")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("malformed answer")
    return answer


def _is_ready(line: bytes) -> bool:
    try:
        return json.loads(line).get("ready") is True
    except (ValueError, AttributeError):
        return False


def _death_message(exc: BaseException, returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"preprocessor worker died (signal {-returncode})"
    if returncode is not None:
        return f"preprocessor worker died (exit code {returncode})"
    return f"preprocessor worker failed: {exc}"


def _worker_env() -> dict[str, str]:
    """Nothing of the node's environment (API keys in LANQUEUE_*) goes to the worker."""
    env = {"PATH": os.defpath}
    if sys.platform == "win32" and "SYSTEMROOT" in os.environ:
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
    return env


async def async_run(symbols: Mapping[str, Any], programs: Sequence[str | None], *,
                    time_limit: float = DEFAULT_TIME_LIMIT,
                    engine: Evaluator | None = None) -> ScriptRun:
    """`Evaluator.async_run` on `engine`, or on a one-off worker when none is given."""
    if engine is not None:
        return await engine.async_run(symbols, programs, time_limit=time_limit)
    async with Evaluator() as one_off:
        return await one_off.async_run(symbols, programs, time_limit=time_limit)


async def async_evaluate(program: str, symbols: Mapping[str, Any], *,
                         time_limit: float = DEFAULT_TIME_LIMIT,
                         engine: Evaluator | None = None) -> Evaluation:
    """Evaluate one program off the event loop; see `Evaluator.async_evaluate`."""
    result = await async_run(symbols, [program], time_limit=time_limit, engine=engine)
    return result.evaluations[0]


# ---------------------------------------------------------------------------------------------
# Worker side: everything below runs in the worker process only.

# Loads this file by path (not as lanqueue.preprocess) so the worker imports nothing of the node.
_BOOT = (
    "import sys, json, importlib.util as u\n"
    "sys.path[:0] = json.loads(sys.argv[2])\n"
    "s = u.spec_from_file_location('_lanqueue_preprocess_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)\n"
    "m._worker_main(int(sys.argv[3]))\n"
)


class _Capture:
    """A text sink that keeps at most OUTPUT_LIMIT characters, so `print` in a loop is harmless."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._truncated = False

    def write(self, text: str) -> int:
        room = OUTPUT_LIMIT - self._size
        if room > 0:
            kept = str(text)[:room]
            self._parts.append(kept)
            self._size += len(kept)
        if len(text) > max(room, 0):
            self._truncated = True
        return len(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        note = "\n[output truncated]\n" if self._truncated else ""
        return "".join(self._parts) + note


class _Session:
    """One asteval interpreter and the symbols it started from."""

    def __init__(self, symbols: dict[str, Any]) -> None:
        from asteval import Interpreter  # imported after numpy has been kept out

        self.out = _Capture()
        self.err = _Capture()
        self.interp = Interpreter(use_numpy=False, writer=self.out, err_writer=self.err,
                                  no_with=True)
        table = self.interp.symtable
        table.pop("open", None)  # asteval offers a read-only open(); preprocessors need none
        table["print"] = self._print
        for name, value in symbols.items():
            if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                table[name] = value
        self.initial = {name: copy.deepcopy(value) for name, value in table.items()
                        if name in symbols}
        self.builtins = {name: value for name, value in table.items() if name not in symbols}

    def _print(self, *args: Any, sep: Any = " ", end: Any = "\n", **_ignored: Any) -> None:
        self.out.write(str(sep).join(str(a) for a in args) + str(end))

    def evaluate(self, program: str) -> dict[str, Any]:
        self.out, self.err = _Capture(), _Capture()
        self.interp.writer, self.interp.err_writer = self.out, self.err
        value = self.interp.eval(program, show_errors=False, raise_errors=False)
        if self.interp.error:
            name, text = self.interp.error[-1].get_error()
            return self._answer(_error(text or name))
        return self._answer(_decide(value))

    def _answer(self, decision: dict[str, Any]) -> dict[str, Any]:
        if decision["decision"] == "error":
            self.err.write(decision["message"] + "\n")
        decision["stdout"] = self.out.getvalue()
        decision["stderr"] = self.err.getvalue()
        return decision

    def diff(self) -> dict[str, str]:
        """Symbols added or changed since the start, as reprs (the original plugin's shape)."""
        changed: dict[str, str] = {}
        for name, value in list(self.interp.symtable.items()):
            if name in self.initial and _same(self.initial[name], value):
                continue
            if name in self.builtins and self.builtins[name] is value:
                continue
            changed[name] = _short_repr(value)
            if len(changed) >= DIFF_LIMIT:
                break
        return changed


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a user-defined object whose repr fails
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT] + "..."


def _error(message: str) -> dict[str, Any]:
    return {"decision": "error", "message": message}


def _decide(value: Any) -> dict[str, Any]:
    """The last value's meaning: dict -> fill, truthy -> run, falsy -> skip."""
    if isinstance(value, dict):
        return _mapping_answer(value)
    try:
        truthy = bool(value)
    except Exception as exc:
        return _error(f"the last value cannot be used as true or false: {exc}")
    return {"decision": "run" if truthy else "skip"}


def _mapping_answer(value: dict[Any, Any]) -> dict[str, Any]:
    mapping: dict[str, str] = {}
    size = 0
    for key, item in value.items():
        if not isinstance(key, str):
            return _error(f"placeholder names must be strings, got {key!r}")
        text = item if isinstance(item, str) else str(item)
        size += len(key) + len(text)
        if size > MAPPING_LIMIT:
            return _error(f"placeholder values exceed {MAPPING_LIMIT} characters")
        mapping[key] = text
    return {"decision": "fill", "mapping": mapping}


def _apply_limits(memory_limit: int) -> None:
    """Cap memory, files and processes; best effort where the platform lacks a limit."""
    try:
        import resource
    except ImportError:  # not a Unix: the time limit still applies
        return
    vm = _virtual_memory_size()
    limits = [("RLIMIT_FSIZE", 0), ("RLIMIT_CORE", 0), ("RLIMIT_NPROC", 0)]
    if vm is not None:
        limits.append(("RLIMIT_AS", vm + memory_limit))
    os.closerange(3, 65536)  # only stdin, stdout and stderr stay open ...
    limits.append(("RLIMIT_NOFILE", 3))  # ... and no new descriptor can be opened
    for name, value in limits:
        number = getattr(resource, name, None)
        if number is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(number, (value, value))


def _virtual_memory_size() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _serve(lines: Iterable[bytes], write: Any) -> None:
    session = _Session({})
    for line in lines:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "reset":
                session = _Session(request.get("symbols") or {})
                answer: dict[str, Any] = {"ok": True}
            elif op == "eval":
                answer = session.evaluate(str(request.get("program", "")))
            elif op == "diff":
                answer = {"diff": session.diff()}
            else:
                answer = {"error": f"unknown op {op!r}"}
        except MemoryError:
            answer = _error("MemoryError: the preprocessor used too much memory")
        except Exception as exc:  # a malformed request: answer it rather than die
            answer = _error(f"worker error: {type(exc).__name__}: {exc}")
        write(json.dumps(answer).encode() + b"\n")


def _worker_main(memory_limit: int) -> None:
    """Entry point of the worker process (see _BOOT)."""
    sys.modules["numpy"] = None  # type: ignore[assignment]  # keeps numpy out of asteval
    import asteval  # noqa: F401  # imported before the limits, which forbid opening files

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr = _Capture()  # type: ignore[assignment]  # stray prints stay off the protocol
    _apply_limits(memory_limit)

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    write(b'{"ready": true}\n')
    _serve(iter(stdin.readline, b""), write)
