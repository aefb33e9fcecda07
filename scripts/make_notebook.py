"""Regenerate examples/driving_imagej.ipynb (run from the repository root)."""
import json
cells = []
def md(s): cells.append({"cell_type": "markdown", "metadata": {}, "source": s.strip("\n").splitlines(True)})
def code(s): cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s.strip("\n").splitlines(True)})
md("""
# Driving ImageJ from Python with ij-bridge

This notebook starts ImageJ 1.x inside Python, sends it a **calibrated** image, runs the
Python-backed command `StarDist 2D (torch)` exactly as a macro would, and reads the ROI
Manager and the Results table back as Python objects (`roifile.ImagejRoi`, `pandas.DataFrame`).

On a desktop, `mode="auto"` shows the ImageJ window; on a server it starts a private virtual
display (Xvfb), so the ROI Manager works with no screen. PyImageJ users: the helpers have
PyImageJ's names (`active_imageplus`, `active_xarray`, `run_plugin`, `show`), and PyImageJ's
`mode="gui"` is accepted for the shown window (docs/bridge.md, "Notebooks").

To run this notebook: `pip install "ij-bridge[notebook]"`, then `jupyter lab examples/`.
""")
code("""
import numpy as np
import xarray as xr
import ij_bridge
from ij_bridge.synthetic import synthetic_nuclei

info = ij_bridge.start(mode="auto")
info
""")
md("""
## A calibrated image

Images in Python are `xarray.DataArray`s with named dims and coordinates in physical units.
Here: synthetic nuclei at 0.25 µm per pixel. A plain numpy array would arrive uncalibrated.
""")
code("""
pixel_size = 0.25  # µm
image, truth = synthetic_nuclei((256, 256), n_objects=30, seed=3)
nuclei = xr.DataArray(
    (np.clip(image, 0, None) * 1000).astype(np.uint16),
    dims=("y", "x"),
    coords={"y": np.arange(256) * pixel_size, "x": np.arange(256) * pixel_size},
    attrs={"units": {"y": "µm", "x": "µm"}},
    name="nuclei",
)
imp = ij_bridge.to_imageplus(nuclei, title="nuclei")
imp.show()
cal = imp.getCalibration()
print(imp.getTitle(), imp.getWidth(), "x", imp.getHeight(), "pixels of", cal.pixelWidth, cal.getUnit())
assert abs(cal.pixelWidth - pixel_size) < 1e-12 and str(cal.getUnit()) == "µm"
""")
md("""
## Run a command, as a macro would

`run_command(name, options)` is `IJ.run(imp, name, options)` with Python errors: the options string
is the same `key=value` text that the Macro Recorder writes. `normalize` is a checkbox: in macro
options a checkbox is on only when its key is present. It returns the images the command opened:
here the label image.
""")
code("""
from ij_bridge import run_command

created = run_command("StarDist 2D (torch)", "normalize low=1 high=99.8 output=Both", imp=imp)
labels_imp, = created
print("the command opened", labels_imp.getTitle())
""")
md("""
`run_plugin` runs any ImageJ command, ImageJ's own too, with a dict of arguments as in PyImageJ;
what ImageJ reports as an error is raised in Python. `active_xarray()` is the active image.
""")
code("""
smooth, = ij_bridge.run_plugin("Duplicate...", {"title": "nuclei-smooth"}, imp=imp)
ij_bridge.run_plugin("Gaussian Blur...", {"sigma": 2}, imp=smooth)
active = ij_bridge.active_xarray()
print("active image:", active.attrs["title"], active.dims, "std", round(float(active.std()), 1),
      "was", round(float(nuclei.std()), 1))
assert active.attrs["title"] == "nuclei-smooth" and float(active.std()) < float(nuclei.std())
try:
    ij_bridge.run_plugin("Gaussian Blur...", "sigma=abc", imp=smooth)
except Exception as error:
    print(type(error).__name__, "-", str(error).split(";")[0])
""")
md("""
## Read the results back

The ROI Manager's ROIs come back as `roifile.ImagejRoi` objects (names and positions kept), the
label image as a calibrated `xarray.DataArray`, and `Measure Labels` fills the Results table,
which arrives as a `pandas.DataFrame` in µm.
""")
code("""
rois = ij_bridge.get_roi_manager_rois()
labels = ij_bridge.from_imageplus(labels_imp)
print(len(rois), "ROIs, first:", rois[0].name)
print("label image dims", labels.dims, "units", labels.attrs["units"], "x step", float(labels.x[1] - labels.x[0]))
assert len(rois) == int(labels.max()) > 0
""")
md("""
`show` draws an image with a label image and ROIs (matplotlib, inline in a notebook), as
PyImageJ's `ij.py.show` does.
""")
code("""
ax = ij_bridge.show(nuclei, labels=labels, rois=rois, title="StarDist nuclei")
""")
code("""
run_command("Measure Labels", f"labels=[{labels_imp.getTitle()}] intensity=[nuclei]")
table = ij_bridge.results_to_dataframe()
table.head()
""")
code("""
from ij_bridge.metrics import matching

score = matching(truth, labels.values.astype(int), thresh=0.5)
print(f"{len(table)} nuclei measured; truth has {truth.max()}; F1@0.5 = {score.f1:.2f}")
area = "Area" if "Area" in table else "area"  # ImageJ's column name in ImageJ's Results table
print("mean area:", round(table[area].mean(), 2), table.attrs.get("units", {}).get(area, ""))
assert len(table) == len(rois)
""")
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
for i, c in enumerate(nb["cells"]):
    c["id"] = f"cell-{i}"
json.dump(nb, open("examples/driving_imagej.ipynb", "w"), indent=1, ensure_ascii=False)
