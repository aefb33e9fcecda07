"""Headless batch runs of an ImageJ macro over a folder of files.

For every input file the runner

1. opens it in ImageJ (``IJ.openImage``); a file ImageJ cannot read (empty,
   truncated or corrupt TIFF, unsupported format) is recorded as failed with
   the reader's message;
2. runs the macro with the file as the active image and every IJ Bridge
   command installed (:func:`ij_bridge.commands.run_macro`: errors, dialogs
   nobody can answer and time-outs are caught and recorded);
3. saves what is open afterwards into ``OUTPUT/<relative folder>/<file stem>/``:

   =========================  ===============================================
   ``<image title>.tif``      every open image, as an ImageJ TIFF written by
                              ImageJ itself (calibration, overlay, LUTs kept);
                              an image extension in the title is dropped
   ``rois.zip``               the ROI Manager, if it holds ROIs
   ``results.csv``            the Results table, if it has rows (full precision)
   ``<table title>.csv``      every other open table (e.g. ``Summary.csv``)
   ``log.txt``                what the macro wrote to the Log, if anything
   *files the macro saved*    anything the macro wrote into its output folder
   ``.ij-bridge.json``        the completion record (status, error, outputs)
   =========================  ===============================================

   The folder is assembled in a staging area and moved into place in one
   rename, completion record included, so a killed run never leaves a folder
   that looks done. Two inputs whose stems collide in one folder
   (``a.tif``, ``a.png``) get ``a_tif/`` and ``a_png/``;
4. resets ImageJ (images, ROI Manager, Results, tables, Log) for the next file.

``OUTPUT/summary.csv`` lists every file: ``input, status, error, messages,
seconds, outputs, output_dir, resumed, worker`` (written atomically, also
during the run, where unfinished files say ``pending``).

The macro's ``getArgument()`` is an options string in ImageJ's own format::

    input=[/abs/path/in/sub/a.tif] output=[/abs/path/to/staging/folder/] name=[a] arg=[--arg value]

read a value with ``call("ij.Macro.getValue", getArgument(), "output", "")``
(a value with an unmatched bracket, such as a file named ``x].tif``, comes
single-quoted, ``input='/abs/x].tif'``, which ``Macro.getValue`` reads too);
files the macro saves under ``output`` become part of that file's outputs.

Parallel runs
-------------
``workers=N`` (also N = 1) starts N worker processes (``python -m ij_bridge.batch
--worker``), each with its own JVM and its own virtual display; ImageJ and the
commands (and any model a command caches) stay loaded from file to file. A
worker that dies (a JVM crash) is replaced and the file it held is recorded as
failed, so one bad file never ends the batch. When ImageJ already runs in the
calling process (a notebook), one-worker runs use that ImageJ instead
(``in_process``). ``scheduler=ADDRESS`` sends the files to a Dask distributed cluster
instead: each Dask worker process starts one ImageJ on its first file and
keeps it (see ``docs/batch.md``).

The package
-----------
=====================================  ==========================================
:mod:`ij_bridge.batch.plan`            planning and records, no Java: the files
                                       of a run, the completion record,
                                       ``summary.csv``, output-folder checks
:mod:`ij_bridge.batch.session`         the ImageJ side: open a file, run the
                                       macro, save what is open, reset
:mod:`ij_bridge.batch.pool`            the local worker processes (time limits,
                                       replacement) and the worker's entry point
:mod:`ij_bridge.batch.dask`            Dask distributed
:mod:`ij_bridge.batch.runner`          :func:`run_batch`, the coordinator
=====================================  ==========================================

Every name is importable from ``ij_bridge.batch`` itself.
"""

from __future__ import annotations

from .dask import _run_dask, dask_process
from .plan import (
    LOCK_NAME,
    RECORD_NAME,
    STAGING_NAME,
    SUMMARY_COLUMNS,
    SUMMARY_NAME,
    BatchError,
    BatchReport,
    FileResult,
    Task,
    _check_existing_outputs,
    _failed,
    _fix_modes,
    _input_stamp,
    _is_within,
    _not_run,
    _OutputLock,
    _own_record,
    _plain_names,
    _publish,
    _result_from_record,
    _safe_name,
    existing_output,
    is_done,
    macro_argument,
    plan_batch,
    read_record,
    write_summary,
)
from .pool import WORKER_GRACE, WORKER_STARTUP_LIMIT, _run_pool, _worker_main, _WorkerProcess, worker_main
from .runner import _run_inline, run_batch
from .session import (
    ImageJSession,
    _ensure_roi_manager,
    _save_without_dialogs,
    check_readable,
    ensure_roi_manager,
    reset_imagej,
    save_open_state,
)

__all__ = [
    "BatchError", "FileResult", "BatchReport", "Task", "plan_batch", "run_batch",
    "ImageJSession", "save_open_state", "reset_imagej", "RECORD_NAME", "SUMMARY_NAME",
    "ensure_roi_manager",
]
