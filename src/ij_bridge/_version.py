"""The package version, in a module of its own.

The numerical cores read it from here, so that recording the version in a
model file does not import :mod:`ij_bridge` itself (the package face, which
names the ImageJ bridge).
"""

__version__ = "0.1.0"
