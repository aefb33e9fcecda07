// Batch example: segment bright objects and measure them, one file at a time.
//
//   ij-bridge batch macros/batch_example.ijm --input RAW/ --output RESULTS/ --pattern "*.tif"
//
// The batch runner opens each file as the active image, runs this macro, and
// saves what is open afterwards into RESULTS/<file stem>/: every image as a
// calibrated TIFF, the ROI Manager as rois.zip, the Results as results.csv,
// other tables (here "Summary") as <title>.csv and the Log as log.txt.
// getArgument() holds "input=[...] output=[...] name=[...] arg=[...]"; files
// saved into `output` become part of the file's outputs too.
//
// With StarDist instead of a threshold (bundled model, ROIs into the ROI Manager):
//   run("StarDist 2D (torch)", "normalize low=1 high=99.8 output=Both");

setBatchMode(true);
output = call("ij.Macro.getValue", getArgument(), "output", "");
original = getTitle();

// measurements in calibrated units, one row per object
run("Set Measurements...", "area mean centroid shape display redirect=None decimal=4");

// a smoothed copy to threshold; the measurements use the original pixels
run("Duplicate...", "title=mask");
run("Gaussian Blur...", "sigma=1.5");
setAutoThreshold("Otsu dark");
run("Convert to Mask");
run("Analyze Particles...", "size=4-Infinity pixel display clear summarize add");

// measure every object on the original image
selectImage(original);
roiManager("Deselect");
run("Clear Results");
roiManager("Measure");

print(original + ": " + roiManager("count") + " objects");
if (output != "")
    File.saveString("objects\t" + roiManager("count") + "\n", output + "counts.tsv");
close("mask");
setBatchMode("exit and display");
