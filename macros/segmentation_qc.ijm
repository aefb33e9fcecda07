// IJ Bridge QC workflow: segment an image with StarDist and score it against ground truth.
//
//   ij-bridge macro macros/segmentation_qc.ijm \
//       --arg "image=[/data/img.tif] truth=[/data/mask.tif] output=[/data/qc] threshold=0.5"
//
// Argument keys (run() option syntax):
//   image=[file]     image to segment
//   truth=[file]     its ground-truth label image (0 = background)
//   output=[folder]  where results go (created if missing)
//   model=[name or folder]   StarDist model (default: bundled nuclei model)
//   threshold=0.5    IoU needed for a predicted object to match a true one
//
// Writes <name>-labels.tif and <name>-qc.csv (matching counts and scores, pixel and
// boundary measures) and prints the main scores.

arg = getArgument();
image = call("ij.Macro.getValue", arg, "image", "");
truth = call("ij.Macro.getValue", arg, "truth", "");
output = call("ij.Macro.getValue", arg, "output", "");
model = call("ij.Macro.getValue", arg, "model", "stardist_nuclei2d");
threshold = call("ij.Macro.getValue", arg, "threshold", "0.5");
if (image == "") image = File.openDialog("Image to segment");
if (truth == "") truth = File.openDialog("Ground-truth label image");
if (output == "") output = getDirectory("Folder for the results");
if (!endsWith(output, File.separator) && !endsWith(output, "/")) output = output + File.separator;
File.makeDirectory(output);

open(truth);
truthTitle = getTitle();
open(image);
imageTitle = getTitle();
name = File.getNameWithoutExtension(image);

run("StarDist 2D (torch)", "input=[" + imageTitle + "] model=[" + model + "] normalize low=1 high=99.8"
    + " probability=auto overlap=auto output=[Label Image] tiles=1 exclude=2 position=Automatic");
saveAs("Tiff", output + name + "-labels.tif");
prediction = getTitle();

run("Segmentation QC", "prediction=[" + prediction + "] truth=[" + truthTitle + "] threshold=" + threshold);
saveAs("Results", output + name + "-qc.csv");
print("true objects: " + getResult("n_true", 0) + ", predicted: " + getResult("n_pred", 0));
print("TP " + getResult("tp", 0) + ", FP " + getResult("fp", 0) + ", FN " + getResult("fn", 0));
print("precision " + d2s(getResult("precision", 0), 3) + ", recall " + d2s(getResult("recall", 0), 3)
      + ", F1 " + d2s(getResult("f1", 0), 3) + " at IoU " + threshold);
