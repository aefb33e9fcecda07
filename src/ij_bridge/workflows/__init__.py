"""Use cases shared by the command line (``ij_bridge.cli``) and the ImageJ commands
(``ij_bridge.commands``).

Each module here runs one family of use cases on xarray images (calibration
included) and raises :class:`ValueError` / :class:`FileNotFoundError` with
messages written for users. Nothing here imports Java, argparse or ImageJ's
dialogs: the front ends keep only arguments, files, dialogs and display.

Modules
-------
models
    The minimal model protocol (:class:`~ij_bridge.workflows.models.InstanceModel`)
    and the one-model cache.
n2v
    Noise2Void: :func:`~ij_bridge.workflows.n2v.denoise`,
    :func:`~ij_bridge.workflows.n2v.train`, :func:`~ij_bridge.workflows.n2v.load_model`.
stardist
    StarDist: :func:`~ij_bridge.workflows.stardist.segment`,
    :func:`~ij_bridge.workflows.stardist.train_from_pairs`,
    :func:`~ij_bridge.workflows.stardist.load_model`.
"""

__all__ = [
    "models",
    "n2v",
    "stardist",
]
