// IJ Bridge workflow: denoise (Noise2Void) -> segment (StarDist) -> measure -> save.
//
// Run from the command line:
//   ij-bridge macro macros/denoise_segment_measure.ijm \
//       --arg "input=[/data/nuclei.tif] output=[/data/results] epochs=10 steps=100"
// or from ImageJ (Plugins > Macros > Run...), which asks for the file and folder.
//
// Argument keys (run() option syntax; all optional except input/output in scripts):
//   input=[file]      the noisy image (2D, 2D+time or a stack of 2D slices)
//   output=[folder]   where results go (created if missing)
//   epochs=10 steps=100 batch=16 patch=64   Noise2Void training
//   model=[name or folder]                  StarDist model (default: bundled nuclei model)
//
// Writes <name>-denoised.tif, <name>-labels.tif (calibrated), <name>-rois.zip,
// <name>-measurements.csv, and the N2V model folder <name>-n2v/.

arg = getArgument();
input = call("ij.Macro.getValue", arg, "input", "");
output = call("ij.Macro.getValue", arg, "output", "");
epochs = call("ij.Macro.getValue", arg, "epochs", "10");
steps = call("ij.Macro.getValue", arg, "steps", "100");
batch = call("ij.Macro.getValue", arg, "batch", "16");
patch = call("ij.Macro.getValue", arg, "patch", "64");
model = call("ij.Macro.getValue", arg, "model", "stardist_nuclei2d");
if (input == "") input = File.openDialog("Noisy image to denoise and segment");
if (output == "") output = getDirectory("Folder for the results");
if (!endsWith(output, File.separator) && !endsWith(output, "/")) output = output + File.separator;
File.makeDirectory(output);
if (!File.isDirectory(output)) exit("cannot create the output folder " + output);

t0 = getTime();
open(input);
raw = getTitle();
name = File.getNameWithoutExtension(input);
print("input: " + raw + " (" + getWidth() + "x" + getHeight() + ", " + nSlices + " planes)");

// 1. denoise: train Noise2Void on the image itself, then predict it
run("N2V Train + Predict (torch)", "training=[" + raw + "] prediction=None model=[" + output + name + "-n2v]"
    + " epochs=" + epochs + " steps=" + steps + " batch=" + batch + " patch=" + patch
    + " radius=5 variant=N2V mode=2D tiles=1");
saveAs("Tiff", output + name + "-denoised.tif");
denoised = getTitle();
t1 = getTime();
print("denoised in " + d2s((t1 - t0) / 1000, 1) + " s");

// 2. segment the denoised image
run("StarDist 2D (torch)", "input=[" + denoised + "] model=[" + model + "] normalize low=1 high=99.8"
    + " probability=auto overlap=auto output=Both tiles=1 exclude=2 position=Automatic");
saveAs("Tiff", output + name + "-labels.tif");
labels = getTitle();
roiManager("Save", output + name + "-rois.zip");
t2 = getTime();
print("segmented in " + d2s((t2 - t1) / 1000, 1) + " s");

// 3. measure every object on the original intensities, in calibrated units
run("Measure Labels", "labels=[" + labels + "] intensity=[" + raw + "]");
saveAs("Results", output + name + "-measurements.csv");
print("measured in " + d2s((getTime() - t2) / 1000, 1) + " s");
print("objects: " + nResults);
