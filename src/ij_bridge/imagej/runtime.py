"""Starting ImageJ 1.x in this process, or joining a JVM that already has it.

ImageJ is found in this order:

1. the ``imagej`` argument: an ``ij.jar``, a folder of jars, or a ``Fiji.app``;
2. the environment variable ``IJ_BRIDGE_IMAGEJ`` (same forms);
3. a JVM already running in this process whose class path has ``ij.IJ``
   (PyImageJ's, for example);
4. Debian's ``/usr/share/java/ij.jar`` (``apt-get install libij-java``).

Display modes
-------------
``headless``
    ``java.awt.headless=true``. Conversions work; anything that needs a window
    (ROI Manager, dialogs, macros that call commands) raises
    :class:`HeadlessError` naming ``mode="virtual"`` as the fix.
``virtual``
    Starts ``Xvfb`` on a free display for the life of the process (never an
    existing one), so windows exist but are unseen. This is the mode for batch
    work on servers.
``interactive`` (also ``gui``)
    The ImageJ window on the user's ``DISPLAY``. ``gui`` is accepted as a
    synonym, because it is PyImageJ's name for this; :func:`mode` then reports
    ``"interactive"``.
``auto``
    ``interactive`` when ``DISPLAY`` is set, else ``virtual`` when Xvfb is
    installed, else ``headless``.

PyImageJ's mode names differ: its ``interactive`` means "a GUI is possible
but not shown", which is closest to ``virtual`` here on a server, while here
``interactive`` shows the window (PyImageJ's ``gui``). docs/bridge.md has the
table.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ._java import jc

log = logging.getLogger("ij_bridge")

__all__ = [
    "start", "attach", "is_started", "mode", "runtime_info", "require_display",
    "ij_version", "java_version", "ImageJNotFoundError", "HeadlessError", "MODES",
    "DEBIAN_IJ_JAR",
]

DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")
MODES = ("auto", "headless", "virtual", "interactive")
#: other names accepted by :func:`start`, and the mode each means
MODE_ALIASES = {"gui": "interactive"}  # PyImageJ's name for the shown ImageJ window
ENV_IMAGEJ = "IJ_BRIDGE_IMAGEJ"
ENV_HEAP = "IJ_BRIDGE_HEAP"

_INSTALL_HINT = (
    "ImageJ 1.x was not found. Install it with `sudo apt-get install libij-java` "
    f"(gives {DEBIAN_IJ_JAR}), or pass ij_bridge.start(imagej=...) / set {ENV_IMAGEJ} "
    "to an ij.jar, a folder of jars or a Fiji.app."
)


class ImageJNotFoundError(RuntimeError):
    """No ImageJ installation could be located."""


class HeadlessError(RuntimeError):
    """An operation needs a (possibly virtual) display but ImageJ runs headless."""


@dataclass
class _State:
    started: bool = False
    mode: str | None = None
    display: str | None = None
    source: str | None = None          # where ImageJ came from
    classpath: list[str] = field(default_factory=list)
    xvfb: subprocess.Popen | None = None
    gateway: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock)


_state = _State()


# --------------------------------------------------------------------------- discovery
def _jars_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jar") if p.is_file())


def _classpath_for(location: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """Class path entries and system properties for an ImageJ location."""
    path = Path(location).expanduser()
    if not path.exists():
        raise ImageJNotFoundError(f"ImageJ location {str(path)!r} does not exist. {_INSTALL_HINT}")
    props: dict[str, str] = {}
    if path.is_file():
        if path.suffix != ".jar":
            raise ImageJNotFoundError(f"{str(path)!r} is not a .jar file. {_INSTALL_HINT}")
        jars = [path]
    elif (path / "jars").is_dir():  # Fiji.app or an ImageJ folder with jars/ and plugins/
        jars = _jars_in(path / "jars")
        if (path / "plugins").is_dir():
            jars += _jars_in(path / "plugins")
            props["plugins.dir"] = str(path)
        props["imagej.dir"] = str(path)
    else:
        jars = _jars_in(path)
    if not any(j.name.startswith(("ij-", "ij.")) or j.name == "ij.jar" for j in jars):
        raise ImageJNotFoundError(f"no ij.jar (ImageJ 1.x) found under {str(path)!r}. {_INSTALL_HINT}")
    return [str(j) for j in jars], props


def _running_jvm_has_imagej() -> bool:
    import jpype

    if not jpype.isJVMStarted():
        return False
    try:
        jc.IJ  # noqa: B018 - the lookup is the test
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- Xvfb
def _pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Ask the kernel to stop Xvfb if the Python process dies without cleanup."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _start_xvfb(timeout: float = 15.0) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("Xvfb")
    if exe is None:
        raise HeadlessError(
            "mode='virtual' needs Xvfb: install it with `sudo apt-get install xvfb`, "
            "or use mode='headless' (no ROI Manager, dialogs or macros)."
        )
    read_fd, write_fd = os.pipe()
    # -displayfd lets Xvfb pick a free display itself and tell us which: no races,
    # and never an existing display.
    preexec = _pdeathsig if threading.current_thread() is threading.main_thread() else None
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=preexec,
    )
    os.close(write_fd)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                proc.kill()
                raise HeadlessError("Xvfb did not start (no display number reported); "
                                    "check that `Xvfb -displayfd 1` works on this machine.")
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if ready:
                chunk = os.read(read_fd, 64)
                if not chunk:
                    continue
                data += chunk
    finally:
        os.close(read_fd)
    display = f":{int(data.strip())}"
    log.info("started Xvfb on display %s (pid %d)", display, proc.pid)
    return proc, display


def _stop_xvfb() -> None:
    proc = _state.xvfb
    if proc is None:
        return
    _state.xvfb = None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


atexit.register(_stop_xvfb)


# --------------------------------------------------------------------------- start
def _canonical_mode(requested: str) -> str:
    """``requested`` with :data:`MODE_ALIASES` applied; a ValueError for an unknown name."""
    requested = MODE_ALIASES.get(requested, requested)
    if requested not in MODES:
        raise ValueError(f"mode must be one of {MODES} (or 'gui', PyImageJ's name for "
                         f"'interactive'), got {requested!r}")
    return requested


def _resolve_mode(requested: str) -> str:
    requested = _canonical_mode(requested)
    if requested != "auto":
        return requested
    if os.environ.get("DISPLAY"):
        return "interactive"
    if shutil.which("Xvfb"):
        return "virtual"
    return "headless"


def _detect_mode_of_running_jvm() -> str:
    if bool(jc.GraphicsEnvironment.isHeadless()):
        return "headless"
    return "interactive"


def start(
    imagej: str | os.PathLike | None = None,
    mode: str = "auto",
    *,
    max_heap: str | None = None,
    jvm_options: Sequence[str] = (),
) -> dict:
    """Start ImageJ in this process (idempotent).

    Parameters
    ----------
    imagej : str or path, optional
        An ``ij.jar``, a folder of jars or a ``Fiji.app``. Default: see module docs.
    mode : {"auto", "headless", "virtual", "interactive", "gui"}
        Display mode (module docs); ``"gui"`` is ``"interactive"`` (PyImageJ's name).
    max_heap : str, optional
        JVM maximum heap such as ``"8g"``; default ``$IJ_BRIDGE_HEAP`` or Java's own default.
    jvm_options : sequence of str
        Extra JVM options.

    Returns
    -------
    dict
        :func:`runtime_info` of the running ImageJ.

    Raises
    ------
    ImageJNotFoundError
        When no ImageJ can be found (the message says what to install).
    RuntimeError
        When ImageJ already runs in another mode than the one explicitly requested.
    """
    mode = _canonical_mode(mode)
    with _state.lock:
        if _state.started:
            if mode not in ("auto", _state.mode):
                raise RuntimeError(
                    f"ImageJ already runs in mode {_state.mode!r} in this process; the mode "
                    f"cannot change to {mode!r} (a JVM starts once per process)."
                )
            return runtime_info()
        import jpype

        if imagej is None and not os.environ.get(ENV_IMAGEJ) and _running_jvm_has_imagej():
            _state.source = "running JVM"
            _state.mode = _detect_mode_of_running_jvm() if mode == "auto" else mode
            _state.display = os.environ.get("DISPLAY")
            _state.started = True
            _install_imagej_instance()
            return runtime_info()
        if jpype.isJVMStarted():
            raise RuntimeError(
                "A JVM is already running in this process without ImageJ on its class path. "
                "Start ij_bridge (or PyImageJ) before anything else starts Java, or put ij.jar "
                "on that JVM's class path."
            )
        location = imagej or os.environ.get(ENV_IMAGEJ)
        if location is None:
            if not DEBIAN_IJ_JAR.is_file():
                raise ImageJNotFoundError(_INSTALL_HINT)
            location = DEBIAN_IJ_JAR
        classpath, props = _classpath_for(location)
        resolved = _resolve_mode(mode)
        if resolved == "virtual":
            _state.xvfb, display = _start_xvfb()
            os.environ["DISPLAY"] = display
            _state.display = display
        elif resolved == "interactive":
            if not os.environ.get("DISPLAY"):
                raise HeadlessError("mode='interactive' needs a DISPLAY; use mode='virtual' on servers.")
            _state.display = os.environ["DISPLAY"]
        props["java.awt.headless"] = "true" if resolved == "headless" else "false"
        # ImageJ formats numbers with the JVM's locale: pin it so that results are
        # the same on every machine.
        props.setdefault("user.language", "en")
        props.setdefault("user.country", "US")
        import scyjava

        try:
            scyjava.config.set_java_constraints(fetch="never")  # the system JDK, never a download
            heap = max_heap or os.environ.get(ENV_HEAP)
            if heap and not re.fullmatch(r"[1-9][0-9]*[kKmMgGtT]?", str(heap)):
                raise ValueError(f"max_heap must look like '512m' or '8g' (java -Xmx syntax), got {heap!r}")
            if heap:
                # scyjava's set_heap_max takes a number of MB ("4g" became "-Xmx4gm")
                scyjava.config.add_option(f"-Xmx{heap}")
            scyjava.config.add_classpath(*classpath)
            scyjava.config.add_options([f"-D{k}={v}" for k, v in props.items()]
                                       + _signal_and_crash_options(jvm_options) + list(jvm_options))
            scyjava.start_jvm()
        except Exception:
            _stop_xvfb()
            raise
        _state.source = str(location)
        _state.classpath = classpath
        _state.mode = resolved
        _state.started = True
        _install_imagej_instance()
        atexit.register(_release_imagej_at_exit)
        log.info("ImageJ %s started (%s mode) from %s", ij_version(), resolved, location)
        return runtime_info()


def _signal_and_crash_options(user_options: Sequence[str]) -> list[str]:
    """JVM options that leave signals to Python and crash reports out of the working directory.

    ``-Xrs``: the JVM installs no handlers for SIGINT, SIGTERM and SIGHUP, so
    Python's stay in charge. Otherwise the JVM's own handler answers Ctrl-C or
    SIGTERM with ``System.exit`` behind Python's back, and its shutdown races
    the Python threads still inside Java (the JVM aborts and writes
    ``hs_err_pid*.log``). With Python's handlers, :mod:`ij_bridge.cancel` stops
    the work at its next step, or - without handlers of ours - SIGINT is a
    ``KeyboardInterrupt`` and SIGTERM ends the process at once as for any
    Python program.

    ``-XX:ErrorFile``: if the JVM does crash, its report goes to the temporary
    folder (``ij-bridge-hs_err_pid<PID>.log``), never into the user's
    working directory. Options the caller passed win.
    """
    import tempfile

    opts = []
    if not any(o == "-Xrs" for o in user_options):
        opts.append("-Xrs")
    if not any(o.startswith("-XX:ErrorFile=") for o in user_options):
        opts.append(f"-XX:ErrorFile={os.path.join(tempfile.gettempdir(), 'ij-bridge-hs_err_pid%p.log')}")
    return opts


def _release_imagej_at_exit() -> None:
    """Let the JVM, and so Python, exit although ImageJ left non-daemon threads.

    Two kinds keep JPype's JVM shutdown waiting forever: the slice-selector thread
    of every open stack window, and ``ij.util.ThreadUtil``'s worker pool once a
    multithreaded filter (Gaussian Blur, ...) ran. This hook closes the image
    windows without save prompts and shuts the pool down. It is registered after
    the JVM starts, so it runs before JPype's shutdown and before Xvfb is stopped
    (Java's X11 toolkit ends the process if its display disappears first).
    """
    try:
        import jpype

        if not jpype.isJVMStarted():
            return
        from .windows import close_all_images

        close_all_images()
        pool = jc.ThreadUtil.threadPoolExecutor
        if pool is not None:
            pool.shutdown()
    except Exception:  # pragma: no cover - best effort at exit
        pass


def _install_imagej_instance() -> None:
    """Create ImageJ's (hidden) main instance so that menus and commands exist."""
    if _state.mode == "headless":
        return
    ImageJ = jc.ImageJ
    IJ = jc.IJ
    if IJ.getInstance() is None:
        ImageJ(ImageJ.STANDALONE if _state.mode == "interactive" else ImageJ.NO_SHOW)
        if _state.mode == "interactive":
            # the user's window must not end Python when closed
            IJ.getInstance().exitWhenQuitting(False)


def attach(gateway: Any) -> dict:
    """Use the JVM of a PyImageJ gateway (``imagej.init(...)``).

    The gateway's ImageJ 1.x layer (``ij.*`` classes, present in every Fiji) is
    used; the bridge keeps a reference to the gateway for the user's convenience.
    """
    with _state.lock:
        import jpype

        if not jpype.isJVMStarted():
            raise RuntimeError("the PyImageJ gateway has no running JVM; call imagej.init() first.")
        if not _running_jvm_has_imagej():
            raise ImageJNotFoundError("the gateway's JVM has no ImageJ 1.x (ij.IJ) on its class path; "
                                      "initialise PyImageJ with an endpoint that includes net.imagej:ij.")
        _state.gateway = gateway
        if not _state.started:
            _state.source = "PyImageJ gateway"
            _state.mode = _detect_mode_of_running_jvm()
            _state.display = os.environ.get("DISPLAY")
            _state.started = True
        return runtime_info()


def is_started() -> bool:
    """True once :func:`start` or :func:`attach` succeeded in this process."""
    return _state.started


def mode() -> str | None:
    """The display mode ImageJ runs in, or None before start."""
    return _state.mode


def _ensure_started() -> None:
    if not _state.started:
        start()


def require_display(what: str) -> None:
    """Raise :class:`HeadlessError` if ``what`` cannot work in the current mode."""
    _ensure_started()
    if _state.mode == "headless":
        raise HeadlessError(
            f"{what} needs a display, but ImageJ runs headless (java.awt.headless=true). "
            "Start ImageJ with ij_bridge.start(mode='virtual') (needs Xvfb) for headless servers, "
            "or mode='interactive' on a desktop."
        )


def ij_version() -> str:
    """ImageJ 1.x version string, e.g. ``'1.53t'``."""
    _ensure_started()
    return str(jc.IJ.getVersion())


def java_version() -> str:
    _ensure_started()
    return str(jc.System.getProperty("java.version"))


def runtime_info() -> dict:
    """A summary of the running ImageJ: versions, mode, display, source."""
    if not _state.started:
        return {"started": False}
    return {
        "started": True,
        "imagej_version": ij_version(),
        "java_version": java_version(),
        "mode": _state.mode,
        "display": _state.display,
        "source": _state.source,
        "xvfb_pid": _state.xvfb.pid if _state.xvfb else None,
        "gateway": _state.gateway is not None,
    }
