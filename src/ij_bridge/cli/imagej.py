"""``ij-bridge info``, ``ij-bridge demo`` and ``ij-bridge imagej``.

``ij-bridge imagej [FILES]`` is the launcher for users who do not write Python:
the ImageJ 1.x window on the user's display, every IJ Bridge command under
*Plugins > IJ Bridge*, the given images open. It returns when ImageJ is quit
(File > Quit, or closing the ImageJ window), with status 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import CLIError
from ._imagej_process import exit_now

__all__ = ["register"]


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imagej", metavar="PATH", help="ij.jar, folder of jars or Fiji.app "
                   "(default: $IJ_BRIDGE_IMAGEJ, a running JVM, /usr/share/java/ij.jar)")
    p.add_argument("--mode", default="auto", choices=["auto", "headless", "virtual", "interactive", "gui"],
                   help="display mode (default: auto)")


def register(sub) -> None:
    p = sub.add_parser("info", help="print ImageJ, Java, display and torch versions")
    _add_runtime_args(p)
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "imagej", help="start the ImageJ window with every IJ Bridge command (Plugins > IJ Bridge)",
        description=(
            "Start ImageJ 1.x with its window on your display, every IJ Bridge command under "
            "Plugins > IJ Bridge, and FILES open. Returns when ImageJ is quit (File > Quit or its "
            "window closed), with status 0."),
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="images to open (any file ImageJ opens)")
    p.add_argument("--imagej", metavar="PATH", help="ij.jar, folder of jars or Fiji.app "
                   "(default: $IJ_BRIDGE_IMAGEJ, /usr/share/java/ij.jar)")
    p.add_argument("--virtual", action="store_true",
                   help="show the window on a private virtual display (Xvfb) instead of $DISPLAY: "
                        "unseen, for scripted use and screenshots")
    p.add_argument("--check", action="store_true",
                   help="list the Plugins > IJ Bridge menu and the open images as ImageJ shows them, "
                        "then quit ImageJ (see --quit-with)")
    p.add_argument("--quit-with", choices=["menu", "window"], default="menu",
                   help="how --check quits: as a click on File > Quit (menu, the default) or on the "
                        "ImageJ window's close button (window)")
    p.set_defaults(func=_imagej)

    p = sub.add_parser("demo", help="run the main workflow on generated sample data")
    p.add_argument("--output", default="demo_output", help="output folder (default: demo_output)")
    _add_runtime_args(p)
    p.set_defaults(func=_demo)


def torch_device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"


def _start(args):
    import ij_bridge
    from ij_bridge.imagej.runtime import ImageJNotFoundError

    try:
        return ij_bridge.start(args.imagej, mode=args.mode)
    except ImageJNotFoundError as exc:
        raise CLIError(str(exc)) from exc


def _info(args) -> int:
    import ij_bridge

    info = _start(args)
    rows = [
        ("ij-bridge", ij_bridge.__version__),
        ("ImageJ", info["imagej_version"]),
        ("Java", info["java_version"]),
        ("ImageJ from", info["source"]),
        ("mode", info["mode"]),
        ("display", info["display"] or "-"),
        ("torch device", torch_device_description()),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _demo(args) -> int:
    from ij_bridge.demo import run_demo

    return run_demo(args.output, imagej=args.imagej, mode=args.mode)


# --------------------------------------------------------------------------- ij-bridge imagej
def _default_menu() -> tuple[str, ...]:
    """The menu that holds the commands, ("Plugins", "IJ Bridge")."""
    from ..commands.registry import DEFAULT_MENU

    return tuple(DEFAULT_MENU.split(">"))


def _menu_labels(path: tuple[str, ...]) -> list[str] | None:
    """The item labels of a menu of the ImageJ window's menu bar (None if there is no such menu)."""
    from ..imagej._java import jc

    bar = jc.Menus.getMenuBar()
    if bar is None:
        return None
    menus = [bar.getMenu(i) for i in range(bar.getMenuCount())]
    menu = next((m for m in menus if str(m.getLabel()) == path[0]), None)
    for name in path[1:]:
        if menu is None:
            return None
        items = [menu.getItem(i) for i in range(menu.getItemCount())]
        menu = next((m for m in items if isinstance(m, jc("java.awt.Menu")) and str(m.getLabel()) == name), None)
    if menu is None:
        return None
    return [str(menu.getItem(i).getLabel()) for i in range(menu.getItemCount())]


def _click_menu_item(menu: str, label: str) -> None:
    """What a click on ``menu > label`` of the ImageJ window does: its ActionEvent, on the event queue."""
    from ..imagej._java import jc

    bar = jc.Menus.getMenuBar()
    m = next(bar.getMenu(i) for i in range(bar.getMenuCount()) if str(bar.getMenu(i).getLabel()) == menu)
    item = next(m.getItem(i) for i in range(m.getItemCount()) if str(m.getItem(i).getLabel()) == label)
    ActionEvent = jc("java.awt.event.ActionEvent")
    queue = jc("java.awt.Toolkit").getDefaultToolkit().getSystemEventQueue()
    queue.postEvent(ActionEvent(item, ActionEvent.ACTION_PERFORMED, item.getActionCommand()))


def _imagej_knows(jc, path: Path) -> bool:
    """Whether ImageJ's Opener knows the file type (or a Fiji's HandleExtraFileTypes may)."""
    if jc.Opener().getFileType(str(path)) != jc.Opener.UNKNOWN:
        return True
    try:
        jc.IJ.getClassLoader().loadClass("HandleExtraFileTypes")  # Fiji: Bio-Formats and others
        return True
    except Exception:
        return False


def _imagej(args) -> int:
    files = [Path(f) for f in args.files]
    for f in files:
        if not f.is_file():
            raise CLIError(f"{str(f)!r} {'is a folder' if f.is_dir() else 'does not exist'}: "
                           "give the image files to open")
    if not args.virtual and not os.environ.get("DISPLAY"):
        raise CLIError("no display: `ij-bridge imagej` shows the ImageJ window, but DISPLAY is not set "
                       "(no desktop session); run it on a desktop or through `ssh -X`, or add --virtual "
                       "for a window on a private virtual display")
    from .. import cancel
    from ..commands import install_commands
    from ..imagej import runtime
    from ..imagej._java import jc

    if args.virtual:
        _, display = runtime._start_xvfb()  # ends with this process (parent-death signal)
        os.environ["DISPLAY"] = display
    try:
        install_commands(args.imagej, mode="interactive")
    except runtime.ImageJNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    except Exception as exc:
        if "X11" not in str(exc):
            raise
        # Java's AWTError "Can't connect to X11 window server using ':N' ...": the JVM runs,
        # so leave at once rather than wait for its shutdown
        print(f"ij-bridge: error: cannot open the display {os.environ.get('DISPLAY')!r} (DISPLAY): "
              "is the X server running and reachable? Or add --virtual for a private virtual display",
              file=sys.stderr, flush=True)
        os._exit(2)
    ij = jc.IJ.getInstance()
    for f in files:
        if not _imagej_knows(jc, f):
            # IJ.open would show an error box, which nobody closes on a virtual display
            print(f"ij-bridge: {str(f)!r} is not a file type this ImageJ opens; not opened", file=sys.stderr)
            continue
        before = jc.WindowManager.getImageCount()
        jc.IJ.open(str(f.resolve()))
        if jc.WindowManager.getImageCount() == before:
            print(f"ij-bridge: ImageJ did not open {str(f)!r} as an image", file=sys.stderr)
    menu = _default_menu()
    in_menu = _menu_labels(menu) or []
    info = runtime.runtime_info()
    print(f"ij-bridge: ImageJ {info['imagej_version']} on display {info['display']}, "
          f"{len(in_menu)} commands in {' > '.join(menu)}; quit ImageJ (File > Quit) to end", flush=True)
    if args.check:
        for label in in_menu:
            print(f"menu: {' > '.join(menu)} > {label}")
        titles = jc.WindowManager.getImageTitles()
        for title in titles:
            print(f"image: {title}")
        sys.stdout.flush()
        if args.quit_with == "menu":
            _click_menu_item("File", "Quit")
        else:  # the window's close button: a WINDOW_CLOSING event
            WindowEvent = jc.WindowEvent
            queue = jc("java.awt.Toolkit").getDefaultToolkit().getSystemEventQueue()
            queue.postEvent(WindowEvent(ij, WindowEvent.WINDOW_CLOSING))
    try:
        while ij.isDisplayable():  # ImageJ disposes its window when it quits
            cancel.check()
            time.sleep(0.2)
    except cancel.Cancelled as exc:
        print(f"ij-bridge: {exc.reason}: ImageJ closed without saving", file=sys.stderr)
        exit_now(cancel.exit_status(exc.reason))
    # quit by the user: ImageJ's threads would keep the JVM (and so Python) waiting: leave now
    exit_now(0, close_images=False)
